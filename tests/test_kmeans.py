"""gmmfast's k-means kernels (distances by GEMM, fused Lloyd step) against NumPy."""

import numpy as np
import pytest

from gmmfast._kernels import _kmeans as kernel
from gmmfast.mixture._kmeans import kmeans, kmeans_plusplus, nearest_centers, squared_distances

DTYPES = (np.float64, np.float32)
TOL = {np.float64: 1e-12, np.float32: 1e-5}


def _reference(X, centers):
    return ((X.astype(np.float64)[:, None, :] - centers[None]) ** 2).sum(axis=-1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("shape", [(1, 3, 1), (7, 1, 3), (2500, 13, 6)])  # N, D, K
def test_squared_distances_match_numpy(dtype, n_threads, shape):
    n, d, k = shape
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((n, d)) + 3).astype(dtype)
    centers = rng.standard_normal((k, d)) + 3
    ref = _reference(X, centers.astype(dtype).astype(np.float64))
    got = squared_distances(X, centers, n_threads=n_threads)
    np.testing.assert_allclose(got, ref, rtol=TOL[dtype], atol=TOL[dtype] * ref.max())
    assert got.min() >= 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_threads", [1, 2])
def test_nearest_centers_fuses_assignment_and_sums(dtype, n_threads):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((3000, 5)).astype(dtype)
    centers = rng.standard_normal((4, 5)) * 2
    ref = _reference(X, centers.astype(dtype).astype(np.float64))
    labels, dist, counts, sums = nearest_centers(X, centers, n_threads=n_threads, accumulate=True)
    clear = np.sort(ref, axis=1)[:, 1] - ref.min(axis=1) > 1e-3  # not a near-tie
    np.testing.assert_array_equal(labels[clear], ref.argmin(axis=1)[clear])
    np.testing.assert_allclose(dist, ref.min(axis=1), rtol=TOL[dtype], atol=TOL[dtype] * ref.max())
    np.testing.assert_array_equal(counts, np.bincount(labels, minlength=4))
    X64 = X.astype(np.float64)
    np.testing.assert_allclose(
        sums, np.stack([X64[labels == k].sum(axis=0) for k in range(4)]), rtol=1e-12, atol=1e-9
    )
    plain = nearest_centers(X, centers, n_threads=n_threads)
    np.testing.assert_array_equal(plain[0], labels)
    assert plain[2] is None and plain[3] is None


def test_ties_go_to_the_first_centre_and_exact_hits_are_zero():
    X = np.array([[0.0, 0.0], [2.0, 0.0]])
    centers = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    labels, dist, _, _ = nearest_centers(X, centers, n_threads=1)
    assert labels.tolist() == [0, 2] and dist.tolist() == [1.0, 0.0]


def test_the_kernel_refuses_mismatched_shapes():
    X = np.zeros((5, 3))
    centers = np.zeros((2, 3))
    norms = np.zeros(2)
    labels, dist = np.zeros(5, dtype=np.intc), np.zeros(5)
    every, none = np.zeros((5, 2)), np.zeros((0, 2))
    counts, sums = np.zeros((1, 2)), np.zeros((1, 2, 3))
    ok = kernel.nearest_centers(X, centers, norms, labels, dist, every, counts, sums, True, 4, 1)
    assert ok == 0
    bad = [
        (X, np.zeros((2, 4)), norms, labels, dist, none, counts, sums, True, 4, 1),  # features
        (X, centers, np.zeros(3), labels, dist, none, counts, sums, True, 4, 1),  # norms
        (X, centers, norms, np.zeros(4, dtype=np.intc), dist, none, counts, sums, True, 4, 1),
        (X, centers, norms, labels, dist, none, counts, sums, True, 4, 2),  # 1 slot, 2 threads
        (X, centers, norms, labels, dist, none, counts, np.zeros((1, 2, 2)), True, 4, 1),
        (X, centers, norms, labels, dist, none, counts, sums, True, 0, 1),  # chunk size
        (X, centers, norms, labels, dist, np.zeros((5, 3)), counts, sums, False, 4, 1),
        (X, centers, norms, labels, dist, np.zeros((4, 2)), counts, sums, False, 4, 1),
    ]
    for args in bad:
        assert kernel.nearest_centers(*args) != 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_kmeans_finds_separated_clusters_with_one_or_two_threads(dtype):
    rng = np.random.RandomState(0)
    truth = np.repeat(np.arange(5), 400)
    X = (rng.randn(2000, 3) + 10 * rng.randn(5, 3)[truth]).astype(dtype)
    results = [kmeans(X, 5, np.random.RandomState(3), n_threads=t) for t in (1, 2)]
    for labels, centers in results:
        # Every true cluster maps to one found cluster.
        pairs = {(a, b) for a, b in zip(truth, labels)}
        assert len(pairs) == 5 and len({b for _, b in pairs}) == 5
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-12)


def test_kmeans_plusplus_picks_distinct_rows():
    rng = np.random.RandomState(0)
    X = rng.randn(300, 4)
    centers, indices = kmeans_plusplus(X, 6, np.random.RandomState(1), n_threads=1)
    assert len(set(indices.tolist())) == 6
    np.testing.assert_array_equal(centers, X[indices])


def test_kmeans_with_duplicated_points_and_more_clusters_than_distinct_values():
    X = np.repeat(np.array([[0.0], [1.0]]), 50, axis=0)
    labels, centers = kmeans(X, 3, np.random.RandomState(0), n_threads=1)
    assert np.isfinite(centers).all() and set(labels.tolist()) <= {0, 1, 2}
