"""Centred sufficient statistics: merging pieces equals summarising the whole."""

import numpy as np
import pytest

from gmmfast.mixture._gaussian import estimate_gaussian_parameters, sufficient_statistics
from gmmfast.mixture._stats import MASS_FLOOR, SufficientStats, combine_all

TYPES = ("full", "tied", "diag", "spherical")


def _data(rng, n=300, d=4, k=3, offset=0.0, dtype=np.float64):
    X = (rng.standard_normal((n, d)) + offset).astype(dtype)
    resp = rng.uniform(size=(n, k))
    resp /= resp.sum(axis=1, keepdims=True)
    return X, resp


def _assert_same(a, b, rtol):
    np.testing.assert_allclose(a.counts, b.counts, rtol=rtol)
    np.testing.assert_allclose(a.means, b.means, rtol=rtol, atol=rtol * np.abs(b.means).max())
    np.testing.assert_allclose(a.scatter, b.scatter, rtol=rtol, atol=rtol * np.abs(b.scatter).max())


@pytest.mark.parametrize("kind", TYPES)
def test_merged_pieces_equal_the_whole(kind):
    rng = np.random.default_rng(0)
    X, resp = _data(rng)
    whole = sufficient_statistics(X, resp, kind, n_threads=1)
    cuts = [0, 1, 2, 50, 170, 300]  # uneven pieces, one of a single sample
    pieces = [
        sufficient_statistics(X[a:b], resp[a:b], kind, n_threads=1)
        for a, b in zip(cuts[:-1], cuts[1:])
    ]
    _assert_same(combine_all(pieces), whole, 1e-12)
    # Pairwise merge in another order gives the same statistics to rounding.
    _assert_same(
        pieces[3].combine(pieces[0]).combine(combine_all(pieces[1:3] + pieces[4:])), whole, 1e-12
    )


@pytest.mark.parametrize("kind", TYPES)
def test_float32_with_a_large_offset_stays_accurate(kind):
    # Mean 1e4, spread 1: raw second moments would cancel every float32 digit.
    rng = np.random.default_rng(1)
    X64, resp = _data(rng, n=4000, offset=1e4)
    X32 = X64.astype(np.float32)
    exact = sufficient_statistics(X32.astype(np.float64), resp, kind, n_threads=1)
    pieces = [
        sufficient_statistics(X32[i : i + 512], resp[i : i + 512], kind, n_threads=1)
        for i in range(0, 4000, 512)
    ]
    merged = combine_all(pieces)
    np.testing.assert_allclose(
        merged.scatter, exact.scatter, rtol=1e-5, atol=1e-5 * exact.scatter.max()
    )


@pytest.mark.parametrize("kind", TYPES)
def test_parameters_match_the_m_step(kind):
    rng = np.random.default_rng(2)
    X, resp = _data(rng)
    nk, means, cov = estimate_gaussian_parameters(X, resp, 1e-3, kind, n_threads=1)
    # By hand, as scikit-learn does it.
    nk_ref = resp.sum(axis=0) + MASS_FLOOR
    means_ref = resp.T @ X / nk_ref[:, None]
    np.testing.assert_allclose(nk, nk_ref, rtol=1e-13)
    np.testing.assert_allclose(means, means_ref, rtol=1e-12)
    full = np.stack(
        [(resp[:, k, None] * (X - means_ref[k])).T @ (X - means_ref[k]) for k in range(3)]
    )
    if kind == "full":
        ref = full / nk_ref[:, None, None] + 1e-3 * np.eye(4)
    elif kind == "tied":
        ref = full.sum(axis=0) / nk_ref.sum() + 1e-3 * np.eye(4)
    elif kind == "diag":
        ref = np.diagonal(full, axis1=1, axis2=2) / nk_ref[:, None] + 1e-3
    else:
        ref = (np.diagonal(full, axis1=1, axis2=2) / nk_ref[:, None] + 1e-3).mean(axis=1)
    np.testing.assert_allclose(cov, ref, rtol=1e-12)


@pytest.mark.parametrize("kind", TYPES)
def test_blend_is_a_weighted_merge(kind):
    rng = np.random.default_rng(3)
    X, resp = _data(rng, n=200)
    a = sufficient_statistics(X[:120], resp[:120], kind, n_threads=1).scaled(1 / 120)
    b = sufficient_statistics(X[120:], resp[120:], kind, n_threads=1).scaled(1 / 80)
    blended = a.blend(b, 1.0)
    _assert_same(blended, b, 1e-12)
    # Weights 120/200 and 80/200 of the averages are the whole data's average.
    whole = sufficient_statistics(X, resp, kind, n_threads=1).scaled(1 / 200)
    _assert_same(a.blend(b, 80 / 200), whole, 1e-12)


def test_empty_component_and_neutral_element():
    rng = np.random.default_rng(4)
    X, resp = _data(rng, n=50)
    resp[:, 2] = 0.0
    stats = sufficient_statistics(X, resp, "full", n_threads=1)
    nk, means, cov = stats.parameters(0.5)
    np.testing.assert_array_equal(means[2], 0.0)
    np.testing.assert_allclose(cov[2], 0.5 * np.eye(4))
    zero = SufficientStats.zeros("full", 3, 4)
    _assert_same(stats.combine(zero), stats, 1e-14)
    _assert_same(zero.combine(stats), stats, 1e-14)
    assert np.isfinite(zero.combine(zero).means).all()


def test_round_trip_and_checks():
    rng = np.random.default_rng(5)
    X, resp = _data(rng)
    stats = sufficient_statistics(X, resp, "diag", n_threads=1)
    again = SufficientStats.from_arrays(stats.to_arrays(), "diag")
    _assert_same(again, stats, 0)
    with pytest.raises(ValueError, match="scatter has shape"):
        SufficientStats.from_arrays(stats.to_arrays(), "full")
    arrays = stats.to_arrays()
    arrays["stats_counts"] = -arrays["stats_counts"]
    with pytest.raises(ValueError, match="non-negative"):
        SufficientStats.from_arrays(arrays, "diag")
    del arrays["stats_means"]
    with pytest.raises(ValueError, match="stats_means is missing"):
        SufficientStats.from_arrays(arrays, "diag")
    with pytest.raises(ValueError, match="different mixtures"):
        stats.combine(SufficientStats.zeros("full", 3, 4))


@pytest.mark.parametrize("kind", TYPES)
def test_mix_inplace_equals_blend(kind):
    rng = np.random.default_rng(3)
    X, resp = _data(rng)
    a = sufficient_statistics(X[:100], resp[:100], kind, n_threads=1).scaled(0.01).copy()
    b = sufficient_statistics(X[100:] + 2.0, resp[100:], kind, n_threads=1)
    b_before = b.copy()
    expected = a.blend(b.scaled(1 / 200), 0.3)
    mixed = a.mix_inplace(0.7, b, 0.3 / 200)
    assert mixed is a  # written over a
    _assert_same(mixed, expected, 1e-12)
    _assert_same(b, b_before, 0)  # other is only read
    # Mixed into empty statistics: the other's, scaled.
    empty = SufficientStats.zeros(kind, 3, 4).mix_inplace(0.2, b, 0.5)
    _assert_same(empty, b.scaled(0.5), 1e-13)
    with pytest.raises(ValueError, match="different mixtures"):
        a.mix_inplace(0.5, SufficientStats.zeros(kind, 2, 4), 0.5)
