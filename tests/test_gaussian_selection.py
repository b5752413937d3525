"""Gaussian selection (issue 27): the candidate kernels against the exact ones,
the full pass's sets and skipped-mass measurement, and whole fits against the
exact fit, including adversarial data.

Tolerances follow tests/test_diag_speed_path.py: kernel values 1e-12 relative
to their scale in float64 and 1e-5 in float32 (products in float32); M-step
statistics accumulate in float64 (1e-12). Whole fits with selection are held
to the guarantee: the measured skipped mass is at most ``selection_tol``, the
lower bound is the exact log-likelihood of the fitted parameters, and that
log-likelihood is within 1e-4 relative of the exact fit's.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy.special import logsumexp

from gmmfast import GaussianMixture
from gmmfast._kernels import _candidates as kernels
from gmmfast.mixture import _candidates, _gaussian
from gmmfast.mixture._candidates import CandidateSets

TYPES = ["full", "tied", "diag", "spherical"]
DTYPES = [np.float64, np.float32]


def _rtol(dtype):
    return 1e-12 if dtype == np.float64 else 1e-5


def _blobs(n=3000, k=12, d=4, spread=6.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)) * spread
    scales = rng.uniform(0.5, 1.5, size=(k, d))
    z = rng.integers(k, size=n)
    return centres[z] + rng.normal(size=(n, d)) * scales[z]


def _model(X, k, covariance_type, dtype, seed=0):
    """A fitted exact model (its parameters serve the kernel tests)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(
            k,
            covariance_type=covariance_type,
            max_iter=3,
            random_state=seed,
            dtype=dtype,
            gaussian_selection="exact",
        ).fit(X)


def _params(gm):
    return gm.weights_, gm.means_, gm.precisions_cholesky_, gm.covariance_type


def _random_sets(n, k, seed, *, every=False):
    rng = np.random.default_rng(seed)
    if every:
        keep = np.ones((n, k), dtype=bool)
    else:
        keep = rng.random((n, k)) < 0.3
        keep[np.arange(n), rng.integers(k, size=n)] = True
    ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(keep.sum(axis=1), out=ptr[1:])
    return CandidateSets.from_csr(ptr, np.nonzero(keep)[1], k), keep


# ----------------------------------------------------------------- kernels
@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", [0, 1, 2])
def test_candidate_estep_matches_exact_on_every_pair(covariance_type, dtype, mode):
    X = _blobs().astype(dtype)
    gm = _model(X, 12, covariance_type, dtype)
    exact, exact_norm = _gaussian.estimate_log_prob(X, *_params(gm), mode=mode, n_threads=2)
    sets, _ = _random_sets(len(X), 12, 0, every=True)
    values, log_norm = _candidates.candidate_log_prob(X, sets, *_params(gm), mode=mode, n_threads=2)
    scale = np.abs(exact).max()
    assert_allclose(values.reshape(exact.shape), exact, rtol=0, atol=_rtol(dtype) * scale)
    assert_allclose(log_norm, exact_norm, rtol=0, atol=_rtol(dtype) * np.abs(exact_norm).max())


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_candidate_estep_on_a_subset_normalises_over_it(covariance_type, dtype):
    X = _blobs(n=1001).astype(dtype)
    gm = _model(X, 12, covariance_type, dtype)
    weighted, _ = _gaussian.estimate_log_prob(X, *_params(gm), mode=0, n_threads=1)
    sets, keep = _random_sets(len(X), 12, 1)
    values, log_norm = _candidates.candidate_log_prob(X, sets, *_params(gm), mode=0, n_threads=3)
    scale = np.abs(weighted).max()
    assert_allclose(values, weighted[keep], rtol=0, atol=_rtol(dtype) * scale)
    expected = logsumexp(np.where(keep, weighted, -np.inf), axis=1)
    assert_allclose(log_norm, expected, rtol=0, atol=_rtol(dtype) * scale)
    resp, _ = _candidates.candidate_log_prob(X, sets, *_params(gm), mode=2, n_threads=2)
    assert_allclose(np.add.reduceat(resp, sets.ptr[:-1]), 1.0, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_candidate_statistics_match_the_dense_m_step(covariance_type, dtype):
    X = _blobs(n=1500).astype(dtype)
    gm = _model(X, 12, covariance_type, dtype)
    resp, _ = _gaussian.estimate_log_prob(X, *_params(gm), mode=2, n_threads=2)
    sets, keep = _random_sets(len(X), 12, 2)
    dense = np.where(keep, resp, 0.0)
    expected = _gaussian.sufficient_statistics(X, dense, covariance_type, n_threads=2)
    got = _candidates.candidate_statistics(X, sets, resp[keep], covariance_type, n_threads=2)
    assert_allclose(got.counts, expected.counts, rtol=1e-12)
    assert_allclose(got.means, expected.means, rtol=0, atol=1e-12 * np.abs(X).max())
    # Full scatters are float32 syrk products for float32 samples (joined in float64),
    # over tiles that differ between the two kernels; diagonal ones accumulate in float64.
    rtol = _rtol(dtype) if covariance_type in ("full", "tied") else 1e-12
    assert_allclose(
        got.scatter, expected.scatter, rtol=0, atol=rtol * np.abs(expected.scatter).max()
    )


def test_candidate_statistics_do_not_depend_on_threads():
    X = _blobs(n=2000)
    gm = _model(X, 12, "full", np.float64)
    resp, _ = _gaussian.estimate_log_prob(X, *_params(gm), mode=2, n_threads=1)
    sets, keep = _random_sets(len(X), 12, 3)
    one = _candidates.candidate_statistics(X, sets, resp[keep], "full", n_threads=1)
    two = _candidates.candidate_statistics(X, sets, resp[keep], "full", n_threads=2)
    for a, b in zip((one.counts, one.means, one.scatter), (two.counts, two.means, two.scatter)):
        assert_array_equal(a, b)


def test_group_by_component_is_a_stable_sort():
    sets, keep = _random_sets(500, 7, 4)
    rows, cols = np.nonzero(keep)
    order = np.argsort(cols, kind="stable")
    assert_array_equal(sets.by_comp, order)
    assert_array_equal(sets.comp_rows, rows[order])
    assert_array_equal(sets.comp_ptr, np.r_[0, np.cumsum(keep.sum(axis=0))])


@pytest.mark.parametrize(
    "ptr, idx",
    [
        ([0, 2, 1, 3], [0, 1, 2]),  # decreasing
        ([0, 1, 2, 4], [0, 1, 2]),  # past the end
        ([1, 1, 2, 3], [0, 1, 2]),  # not from 0
        ([0, 1, 2, 3], [0, 5, 1]),  # component out of range
        ([0, 1, 2, 3], [0, -1, 1]),
    ],
)
def test_group_by_component_refuses_inconsistent_sets(ptr, idx):
    with pytest.raises(ValueError):
        CandidateSets.from_csr(np.array(ptr), np.array(idx), 3)


def test_candidate_kernels_refuse_sets_of_other_data():
    X = _blobs(n=300)
    gm = _model(X, 12, "full", np.float64)
    sets, _ = _random_sets(200, 12, 5)
    with pytest.raises(ValueError, match="do not match"):
        _candidates.candidate_log_prob(X, sets, *_params(gm), mode=0, n_threads=1)


def test_row_cuts_keep_threshold_and_top_entries():
    rng = np.random.default_rng(6)
    resp = rng.dirichlet(np.full(20, 0.05), size=400)
    resp[0] = 0.0  # a sample no component explains
    resp[1] = 0.0
    resp[1, 3] = 1.0  # one component, the rest exactly zero
    cut = np.empty(len(resp))
    counts = np.empty(len(resp), dtype=np.int64)
    assert kernels.row_cuts(resp, 1e-3, 4, cut, counts, 2) == 0
    ranks = np.argsort(np.argsort(-resp, axis=1), axis=1)
    expected = (resp >= 1e-3) | ((ranks < 4) & (resp > 0))
    expected[0] = True
    assert_array_equal(counts, expected.sum(axis=1))
    ptr = np.r_[0, np.cumsum(counts)]
    idx = np.empty(ptr[-1], dtype=np.int32)
    values = np.empty(ptr[-1])
    assert kernels.gather_kept(resp, cut, ptr, idx, values, 2) == 0
    assert_array_equal(idx, np.nonzero(expected)[1])
    assert_array_equal(values, resp[expected])


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_full_pass_measures_the_mass_previous_sets_miss(covariance_type):
    X = _blobs(n=2500)
    gm = _model(X, 12, covariance_type, np.float64)
    resp, log_norm = _gaussian.estimate_log_prob(X, *_params(gm), mode=2, n_threads=2)
    previous, keep = _random_sets(len(X), 12, 7)
    result = _candidates.full_pass(
        X, *_params(gm), threshold=1e-6, n_top=2, previous=previous, n_threads=2
    )
    assert_allclose(result.skipped_mass, np.mean(1 - np.where(keep, resp, 0).sum(1)), rtol=1e-10)
    assert_allclose(result.log_norm, log_norm, rtol=1e-12)
    kept = np.zeros_like(keep)
    kept[np.repeat(np.arange(len(X)), np.diff(result.sets.ptr)), result.sets.idx] = True
    assert np.all(kept[resp >= 1e-6])
    # What a set leaves out is below the threshold, per pair.
    assert np.all(resp[~kept] < 1e-6)


# --------------------------------------------------------------- estimator
def _fit(X, mode, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        return GaussianMixture(gaussian_selection=mode, **kw).fit(X)


def test_exact_mode_is_the_plain_em_bit_for_bit():
    X = _blobs(n=2000, k=40, d=5)
    start = _model(X, 40, "full", np.float64)
    kw = dict(
        n_components=40,
        max_iter=3,
        tol=0,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
    )
    fitted = _fit(X, "exact", **kw)
    # The EM of gmmfast before Gaussian selection, step by step (from the factors that
    # fit computes of precisions_init).
    w, mu = start.weights_, start.means_
    prec = _gaussian.precision_cholesky_from_precisions(start.precisions_, "full")
    for _ in range(3):
        resp, log_norm = _gaussian.estimate_log_prob(
            X, w, mu, prec, "full", mode=2, n_threads=fitted._n_threads()
        )
        _gaussian.floor_responsibilities(resp, 1e-12)
        nk, mu, cov = _gaussian.estimate_gaussian_parameters(
            X, resp, 1e-6, "full", n_threads=fitted._n_threads()
        )
        w = nk / nk.sum()
        prec = _gaussian.precision_cholesky_from_covariances(
            cov, "full", 1e-6, n_threads=fitted._n_threads()
        )
    assert_array_equal(fitted.means_, mu)
    assert_array_equal(fitted.covariances_, cov)
    assert fitted.lower_bound_ == float(np.mean(log_norm))
    assert fitted.selection_skipped_mass_ is None


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_selection_fit_agrees_with_the_exact_fit(covariance_type, dtype):
    X = _blobs(n=4000, k=40, d=6, seed=1).astype(dtype)
    start = _model(X[:1500], 40, covariance_type, dtype)
    kw = dict(
        n_components=40,
        covariance_type=covariance_type,
        dtype=dtype,
        max_iter=15,
        tol=0,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
    )
    exact = _fit(X, "exact", **kw)
    selected = _fit(X, "candidates", selection_tol=1e-3, **kw)
    assert selected.selection_skipped_mass_ <= 1e-3
    # The lower bound of a selection fit is exact: the log-likelihood of its parameters.
    assert_allclose(selected.lower_bound_, selected.score(X), rtol=1e-12)
    assert_allclose(selected.score(X), exact.score(X), rtol=1e-4)
    assert_allclose(selected.weights_, exact.weights_, rtol=0, atol=1e-3)
    assert_allclose(selected.means_, exact.means_, rtol=0, atol=1e-2 * np.abs(X).max())


def _overlapping(n=2000, d=3, seed=2):
    """40 components fitted to one Gaussian blob: responsibilities spread wide."""
    return np.random.default_rng(seed).normal(size=(n, d))


def _equidistant():
    """Components on a circle and samples at its centre: every responsibility 1/K."""
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    ring = np.c_[np.cos(angles), np.sin(angles)] * 10
    rng = np.random.default_rng(3)
    X = ring[rng.integers(40, size=2000)] + rng.normal(size=(2000, 2)) * 0.5
    return np.r_[X, np.zeros((20, 2))]


def _outliers():
    """Blobs plus far outliers whose every responsibility is tiny before normalising."""
    X = _blobs(n=2000, k=40, d=3, seed=4)
    far = np.random.default_rng(5).normal(size=(10, 3)) * 1e4
    return np.r_[X, far]


@pytest.mark.parametrize("make", [_overlapping, _equidistant, _outliers])
@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_selection_guarantee_on_adversarial_data(make, covariance_type):
    X = make()
    kw = dict(n_components=40, covariance_type=covariance_type, max_iter=20, tol=0, random_state=0)
    selected = _fit(X, "candidates", selection_tol=1e-3, **kw)
    exact = _fit(X, "exact", **kw)
    assert selected.selection_skipped_mass_ <= 1e-3
    assert_allclose(selected.lower_bound_, selected.score(X), rtol=1e-12)
    assert_allclose(selected.score(X), exact.score(X), rtol=1e-4)


def test_equidistant_samples_keep_every_component():
    X = _equidistant()
    gm = GaussianMixture(40, covariance_type="spherical")
    gm.weights_ = np.full(40, 1 / 40)
    angles = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    gm.means_ = np.c_[np.cos(angles), np.sin(angles)] * 10
    gm.precisions_cholesky_ = np.ones(40)
    result = _candidates.full_pass(
        X, *_params(gm), threshold=1e-7, n_top=8, previous=None, n_threads=2
    )
    counts = np.diff(result.sets.ptr)
    assert np.all(counts[-20:] == 40)
    assert_allclose(result.resp[-40:], 1 / 40, rtol=1e-9)


def test_auto_selects_only_where_it_pays():
    assert _candidates.applies("auto", "full", 200, complete=True)
    assert not _candidates.applies("auto", "full", 10, complete=True)
    assert not _candidates.applies("auto", "tied", 2048, complete=True)
    assert not _candidates.applies("auto", "diag", 64, complete=True)
    assert _candidates.applies("auto", "diag", 1024, complete=True)
    assert not _candidates.applies("auto", "full", 200, complete=False)
    assert not _candidates.applies("exact", "full", 2048, complete=True)
    assert not _candidates.applies("auto", "factor", 2048, complete=True)


def test_auto_needs_enough_samples_for_its_probe():
    assert not _candidates.applies("auto", "full", 200, complete=True, n_samples=8191)
    assert _candidates.applies("auto", "full", 200, complete=True, n_samples=8192)
    assert _candidates.applies("candidates", "full", 200, complete=True, n_samples=100)
    X = _blobs(n=3000, k=40, d=3)
    small = _fit(X, "auto", n_components=40, max_iter=3, random_state=0)
    assert small.selection_skipped_mass_ is None


def test_auto_is_exact_at_small_k_and_selects_at_large_k():
    X = _blobs(n=10_000, k=40, d=3)
    small = _fit(X, "auto", n_components=5, max_iter=5, random_state=0)
    assert small.selection_skipped_mass_ is None
    large = _fit(X, "auto", n_components=40, max_iter=5, random_state=0)
    assert large.selection_skipped_mass_ is not None


def test_missing_values_run_exact_em_or_are_refused_by_name():
    X = _blobs(n=2000, k=40, d=4)
    X[::7, 1] = np.nan
    auto = _fit(X, "auto", n_components=40, max_iter=3, random_state=0)
    assert auto.selection_skipped_mass_ is None
    with pytest.raises(ValueError, match="missing values"):
        _fit(X, "candidates", n_components=40, max_iter=3, random_state=0)


def test_factor_covariances_refuse_candidates():
    X = _blobs(n=500, k=4, d=6)
    with pytest.raises(ValueError, match="covariance_type='factor'"):
        _fit(X, "candidates", n_components=4, covariance_type="factor", n_factors=2)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"gaussian_selection": "fast"}, "gaussian_selection"),
        ({"gaussian_selection": None}, "gaussian_selection"),
        ({"selection_tol": 0.0}, "selection_tol"),
        ({"selection_tol": 0.5}, "selection_tol"),
        ({"selection_tol": True}, "selection_tol"),
        ({"selection_tol": "1e-3"}, "selection_tol"),
    ],
)
def test_bad_selection_parameters_are_refused(params, match):
    with pytest.raises(ValueError, match=match):
        GaussianMixture(2, **params).fit(_blobs(n=100, k=2, d=2))


def test_selection_with_n_init_and_warm_start():
    X = _blobs(n=3000, k=40, d=3, seed=6)
    gm = _fit(X, "candidates", n_components=40, n_init=2, max_iter=10, random_state=0)
    assert_allclose(gm.lower_bound_, gm.score(X), rtol=1e-12)
    gm.set_params(warm_start=True, max_iter=5)
    before = gm.lower_bound_
    _fit_warm = gm.fit(X)
    assert _fit_warm.lower_bound_ >= before - 1e-9
    assert_allclose(gm.lower_bound_, gm.score(X), rtol=1e-12)


def test_fit_predict_and_threads_with_selection():
    X = _blobs(n=3000, k=40, d=3, seed=8)
    kw = dict(n_components=40, max_iter=8, random_state=0, tol=0)
    one = _fit(X, "candidates", n_threads=1, **kw)
    two = _fit(X, "candidates", n_threads=2, **kw)
    assert_allclose(one.means_, two.means_, rtol=0, atol=1e-10 * np.abs(X).max())
    labels = GaussianMixture(gaussian_selection="candidates", **kw).fit_predict(X)
    assert_array_equal(labels, one.predict(X))


def test_unconfirmed_selection_warns_when_max_iter_ends_the_fit():
    # From random samples as means, one iteration moves the components far: the sets of
    # the first full pass miss about a tenth of the mass at the fitted parameters.
    X = _blobs(n=3000, k=40, d=4, seed=3)
    with pytest.warns(RuntimeWarning, match="selection_tol"):
        gm = GaussianMixture(
            40,
            max_iter=1,
            tol=0,
            random_state=0,
            init_params="random_from_data",
            gaussian_selection="candidates",
            selection_tol=1e-3,
        ).fit(X)
    assert gm.selection_skipped_mass_ > 1e-3
    # The lower bound is exact all the same.
    assert_allclose(gm.lower_bound_, gm.score(X), rtol=1e-12)


def test_candidate_iterations_continue_until_the_sets_are_confirmed():
    # The same start with room to go on: EM continues past the failed confirmation.
    X = _blobs(n=3000, k=40, d=4, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        gm = GaussianMixture(
            40,
            max_iter=200,
            random_state=0,
            init_params="random_from_data",
            gaussian_selection="candidates",
            selection_tol=1e-3,
        ).fit(X)
    assert gm.converged_
    assert gm.selection_skipped_mass_ <= 1e-3


def test_classifier_passes_the_selection_parameters_to_each_class():
    from gmmfast import GMMClassifier

    X = _blobs(n=600, k=4, d=3)
    y = (X[:, 0] > np.median(X[:, 0])).astype(int)
    clf = GMMClassifier(2, gaussian_selection="exact", selection_tol=1e-2, random_state=0)
    clf.fit(X, y)
    for mixture in clf.estimators_:
        assert mixture.gaussian_selection == "exact"
        assert mixture.selection_tol == 1e-2
    with pytest.raises(ValueError, match="gaussian_selection"):
        GMMClassifier(2, gaussian_selection="fast").fit(X, y)


def test_epll_with_candidates_restores_as_the_exact_evaluation():
    from gmmfast.image import PatchDenoiser, psnr

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :40] / 40.0
    clean = 0.5 + 0.3 * np.sin(6 * xx + 3 * yy) * np.cos(4 * yy)
    noisy = clean + rng.normal(size=clean.shape) * 0.1
    den = PatchDenoiser(
        patch_size=4, n_components=32, max_patches=1500, max_iter=15, random_state=0
    ).fit(clean[None])
    calls = []
    original = _candidates.candidate_log_prob

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_candidates, "candidate_log_prob", spy)
        exact = den.set_params(gaussian_selection="exact").denoise(noisy, 0.1)
        assert not calls
        selected = den.set_params(gaussian_selection="candidates").denoise(noisy, 0.1)
    assert len(calls) == 4  # one per EPLL step after the first pass
    assert abs(psnr(clean, selected) - psnr(clean, exact)) < 0.05
    assert np.mean(np.abs(selected - exact)) < 1e-3
    with pytest.raises(ValueError, match="gaussian_selection"):
        den.set_params(gaussian_selection="fast").denoise(noisy, 0.1)


def test_warm_start_with_selection_does_not_stop_after_one_iteration():
    # The lower bound of a selection fit is the exact log-likelihood of its parameters,
    # which a warm start's first E-step recomputes: that is no convergence.
    X = _blobs(n=10_000, k=40, d=3, seed=9)
    gm = _fit(X, "candidates", n_components=40, max_iter=2, tol=1e-3, random_state=0)
    assert not gm.converged_
    gm.set_params(warm_start=True, max_iter=20)
    _fit_again = gm.fit(X)
    assert _fit_again.n_iter_ >= 2
