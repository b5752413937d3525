"""Overlapping-patch extraction and averaging against NumPy references.

The references are written independently of ``gmmfast.image``'s patch kernels:
extraction indexes ``np.lib.stride_tricks.sliding_window_view`` at the
positions ``range(0, L - m + 1, s)`` (+ ``L - m``), and averaging
accumulates with ``np.add.at`` into sums and weight sums. float64 results
are compared to 1e-12; for float32 the kernels accumulate in float64, so
extract-then-average returns the float32 input exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from numpy.testing import assert_allclose, assert_array_equal

from gmmfast.image import average_patches, extract_patches, patch_positions

# (H, W, m, s): square and non-square images, strides that divide H - m and
# strides that do not (so the last position is appended), m = 1 and m = H.
SHAPES = [
    (28, 28, 8, 1),
    (28, 28, 8, 3),
    (13, 17, 4, 3),
    (10, 7, 3, 2),
    (7, 10, 3, 3),
    (9, 12, 5, 5),
    (6, 6, 1, 1),
    (6, 11, 6, 4),
    (1, 5, 1, 1),
]


def ref_positions(length, m, s):
    pos = list(range(0, length - m + 1, s))
    if pos[-1] != length - m:
        pos.append(length - m)
    return np.array(pos)


def ref_extract(images, m, s):
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 2:
        images = images[None]
    _, height, width = images.shape
    rows, cols = ref_positions(height, m, s), ref_positions(width, m, s)
    windows = sliding_window_view(images, (m, m), axis=(1, 2))  # (n, H-m+1, W-m+1, m, m)
    return windows[:, rows][:, :, cols].reshape(-1, m * m)


def ref_average(patches, shape, m, s, weights=None):
    """np.add.at reference; returns (images, weight sum per pixel)."""
    n, height, width = shape
    rows, cols = ref_positions(height, m, s), ref_positions(width, m, s)
    if weights is None:
        weights = np.ones(len(patches))
    sums = np.zeros(shape)
    wsum = np.zeros(shape)
    idx = np.arange(m)
    p = 0
    for i in range(n):
        for r in rows:
            for c in cols:
                yy, xx = np.meshgrid(r + idx, c + idx, indexing="ij")
                np.add.at(
                    sums, (i, yy, xx), weights[p] * patches[p].reshape(m, m).astype(np.float64)
                )
                np.add.at(wsum, (i, yy, xx), weights[p])
                p += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / wsum, wsum


def covering_weights(rng, n_patches, shape, m, s, zero_fraction=0.3):
    """Random weights in [0.5, 2] with about ``zero_fraction`` zeros, every pixel still covered."""
    weights = rng.uniform(0.5, 2.0, n_patches)
    weights[rng.random(n_patches) < zero_fraction] = 0.0
    n, height, width = shape
    rows, cols = ref_positions(height, m, s), ref_positions(width, m, s)
    _, wsum = ref_average(np.zeros((n_patches, m * m)), shape, m, s, weights)
    for i, y, x in zip(*np.nonzero(wsum == 0)):
        a = np.flatnonzero((rows <= y) & (y < rows + m))[0]
        b = np.flatnonzero((cols <= x) & (x < cols + m))[0]
        weights[(i * len(rows) + a) * len(cols) + b] = 1.0
    return weights


# --------------------------------------------------------------------------
# Positions
# --------------------------------------------------------------------------


def test_patch_positions_examples():
    assert_array_equal(patch_positions(10, 4, 3), [0, 3, 6])
    assert_array_equal(patch_positions(10, 4, 4), [0, 4, 6])
    assert_array_equal(patch_positions(5, 5, 1), [0])
    assert_array_equal(patch_positions(28, 8, 1), np.arange(21))
    assert patch_positions(28, 8, 1).dtype == np.intp


@given(st.integers(1, 40), st.data())
def test_patch_positions_cover_every_index(length, data):
    m = data.draw(st.integers(1, length))
    s = data.draw(st.integers(1, m))
    pos = patch_positions(length, m, s)
    assert_array_equal(pos, ref_positions(length, m, s))
    assert pos[0] == 0 and pos[-1] == length - m
    assert np.all(np.diff(pos) >= 1) and np.all(np.diff(pos) <= s)
    covered = np.zeros(length, bool)
    for p in pos:
        covered[p : p + m] = True
    assert covered.all()


# --------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("height, width, m, s", SHAPES)
def test_extract_matches_sliding_window_view(height, width, m, s, dtype):
    rng = np.random.default_rng(height * 100 + width)
    X = rng.standard_normal((3, height, width)).astype(dtype)
    P = extract_patches(X, m, s)
    n_rows, n_cols = len(ref_positions(height, m, s)), len(ref_positions(width, m, s))
    assert P.shape == (3 * n_rows * n_cols, m * m)
    assert P.dtype == dtype and P.flags.c_contiguous
    assert_array_equal(P, ref_extract(X, m, s).astype(dtype))


def test_extract_order_and_single_image():
    """Image-major, then row position, then column position; pixels row-major."""
    image = np.arange(16.0).reshape(4, 4)
    P = extract_patches(image, 2, 2)
    assert_array_equal(P, [[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]])
    X = np.stack([image, image + 100])
    assert_array_equal(extract_patches(X, 2, 2), np.vstack([P, P + 100]))
    # A stride that does not divide H - m: positions 0, 2 and the appended 3.
    P = extract_patches(np.arange(25.0).reshape(5, 5), 2, 2)
    assert len(P) == 9
    assert_array_equal(P[2], [3, 4, 8, 9])
    assert_array_equal(P[-1], [18, 19, 23, 24])


def test_extract_non_contiguous_and_integer_inputs():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 12, 10))
    expected = extract_patches(X, 3, 2)
    assert_array_equal(extract_patches(np.asfortranarray(X), 3, 2), expected)
    big = np.zeros((8, 24, 20))
    big[::2, ::2, ::2] = X
    assert_array_equal(extract_patches(big[::2, ::2, ::2], 3, 2), expected)
    Xi = rng.integers(0, 255, (2, 6, 6))
    P = extract_patches(Xi, 3)
    assert P.dtype == np.float64
    assert_array_equal(P, ref_extract(Xi, 3, 1))
    assert extract_patches(X.astype(np.float16), 3).dtype == np.float64


# --------------------------------------------------------------------------
# Averaging
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("height, width, m, s", SHAPES)
def test_extract_then_average_is_identity_for_every_stride(height, width, m, s, dtype):
    rng = np.random.default_rng(m)
    X = rng.uniform(-1.0, 1.0, (2, height, width)).astype(dtype)
    for stride in range(1, m + 1):
        Y = average_patches(extract_patches(X, m, stride), X.shape, m, stride)
        assert Y.dtype == dtype and Y.shape == X.shape
        if dtype == np.float32:
            assert_array_equal(Y, X)  # float64 sums of equal float32 values are exact
        else:
            assert_allclose(Y, X, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 3),
    height=st.integers(1, 14),
    width=st.integers(1, 14),
    dtype=st.sampled_from([np.float64, np.float32]),
    data=st.data(),
)
def test_extract_then_average_identity_property(n, height, width, dtype, data):
    m = data.draw(st.integers(1, min(height, width)), label="m")
    s = data.draw(st.integers(1, m), label="s")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    X = np.random.default_rng(seed).uniform(-10.0, 10.0, (n, height, width)).astype(dtype)
    P = extract_patches(X, m, s)
    assert_array_equal(P, ref_extract(X, m, s).astype(dtype))
    Y = average_patches(P, (height, width), m, s)
    assert Y.dtype == dtype and Y.shape == X.shape
    if dtype == np.float32:
        assert_array_equal(Y, X)
    else:
        assert_allclose(Y, X, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("height, width, m, s", SHAPES)
def test_average_matches_add_at(height, width, m, s, weighted):
    rng = np.random.default_rng(7)
    shape = (2, height, width)
    n_patches = 2 * len(ref_positions(height, m, s)) * len(ref_positions(width, m, s))
    P = rng.standard_normal((n_patches, m * m))
    weights = covering_weights(rng, n_patches, shape, m, s) if weighted and n_patches > 2 else None
    expected, _ = ref_average(P, shape, m, s, weights)
    assert_allclose(
        average_patches(P, shape, m, s, weights=weights), expected, rtol=1e-12, atol=1e-13
    )
    assert_allclose(
        average_patches(P.astype(np.float32), (height, width), m, s, weights=weights),
        ref_average(P.astype(np.float32), shape, m, s, weights)[0],
        rtol=1e-6,
        atol=1e-6,
    )


def test_weights_of_one_equal_plain_average_and_scale_invariance():
    rng = np.random.default_rng(3)
    P = rng.standard_normal((2 * 5 * 4, 9))
    plain = average_patches(P, (7, 6), 3, 1)
    assert_allclose(average_patches(P, (7, 6), 3, 1, weights=np.ones(len(P))), plain, rtol=1e-14)
    w = rng.uniform(0.1, 3.0, len(P))
    assert_allclose(
        average_patches(P, (7, 6), 3, 1, weights=1e3 * w),
        average_patches(P, (7, 6), 3, 1, weights=w),
        rtol=1e-13,
    )


@pytest.mark.parametrize(
    "height, width, m, s", [(9, 7, 3, 1), (10, 13, 4, 3), (8, 8, 4, 4), (11, 12, 5, 2)]
)
def test_coverage_counts_at_corners(height, width, m, s):
    """One patch of ones among zeros averages to 1 / (coverage count) over its pixels."""
    rows, cols = ref_positions(height, m, s), ref_positions(width, m, s)
    count_y = np.array([np.sum((rows <= y) & (y < rows + m)) for y in range(height)])
    count_x = np.array([np.sum((cols <= x) & (x < cols + m)) for x in range(width)])
    counts = np.outer(count_y, count_x)
    for a, b in [(0, 0), (0, len(cols) - 1), (len(rows) - 1, 0), (len(rows) - 1, len(cols) - 1)]:
        P = np.zeros((len(rows) * len(cols), m * m))
        P[a * len(cols) + b] = 1.0
        Y = average_patches(P, (height, width), m, s)[0]
        inside = np.zeros((height, width), bool)
        inside[rows[a] : rows[a] + m, cols[b] : cols[b] + m] = True
        assert_allclose(Y[inside], 1.0 / counts[inside], rtol=1e-15)
        assert_array_equal(Y[~inside], 0.0)
        # Only the corner patch covers the image corner.
        corner = (0 if a == 0 else height - 1, 0 if b == 0 else width - 1)
        assert Y[corner] == 1.0
    if s == 1 and height >= 2 * m - 1 and width >= 2 * m - 1:
        assert counts[0, 0] == 1 and counts[0, m - 1] == m and counts[m - 1, m - 1] == m * m


def test_average_image_shape_forms():
    rng = np.random.default_rng(5)
    P = rng.standard_normal((3 * 4 * 4, 9))
    Y2 = average_patches(P, (6, 6), 3, 1)
    Y3 = average_patches(P, (3, 6, 6), 3, 1)
    assert Y2.shape == Y3.shape == (3, 6, 6)
    assert_array_equal(Y2, Y3)
    assert_array_equal(average_patches(P, np.array([6, 6]), 3, 1), Y2)


# --------------------------------------------------------------------------
# dtype, threads, inputs left alone
# --------------------------------------------------------------------------


def test_float32_in_float32_out():
    rng = np.random.default_rng(1)
    X = rng.random((3, 10, 9)).astype(np.float32)
    P = extract_patches(X, 4, 2)
    assert P.dtype == np.float32
    Y = average_patches(P, X.shape, 4, 2, weights=rng.uniform(0.5, 1.0, len(P)))
    assert Y.dtype == np.float32
    assert average_patches(P.astype(np.float64), X.shape, 4, 2).dtype == np.float64
    assert average_patches(P.astype(np.int64), X.shape, 4, 2).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_and_two_threads_identical(dtype):
    rng = np.random.default_rng(2)
    X = rng.standard_normal((7, 20, 17)).astype(dtype)
    P1 = extract_patches(X, 5, 2, n_threads=1)
    assert_array_equal(extract_patches(X, 5, 2, n_threads=2), P1)
    assert_array_equal(extract_patches(X, 5, 2, n_threads=3), P1)
    w = rng.uniform(0.1, 2.0, len(P1))
    for weights in (None, w):
        Y1 = average_patches(P1, X.shape, 5, 2, weights=weights, n_threads=1)
        assert_array_equal(average_patches(P1, X.shape, 5, 2, weights=weights, n_threads=2), Y1)
        assert_array_equal(average_patches(P1, X.shape, 5, 2, weights=weights, n_threads=-1), Y1)
        assert_array_equal(average_patches(P1, X.shape, 5, 2, weights=weights, n_threads=None), Y1)


def test_inputs_not_modified():
    rng = np.random.default_rng(4)
    for dtype in (np.float64, np.float32):
        X = rng.standard_normal((2, 9, 8)).astype(dtype)
        X_copy = X.copy()
        X.flags.writeable = False  # a write would raise
        P = extract_patches(X, 3, 2)
        assert_array_equal(X, X_copy)
        P_copy = P.copy()
        P.flags.writeable = False
        w = rng.uniform(0.5, 1.0, len(P))
        w_copy = w.copy()
        w.flags.writeable = False
        Y = average_patches(P, X.shape, 3, 2, weights=w)
        assert_array_equal(P, P_copy)
        assert_array_equal(w, w_copy)
        assert not np.shares_memory(Y, P) and not np.shares_memory(extract_patches(X, 3, 2), X)


# --------------------------------------------------------------------------
# Bad inputs
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "images, patch_size, stride, match",
    [
        (np.zeros(5), 1, 1, "shape \\(n_images, H, W\\)"),
        (np.zeros((2, 2, 5, 5)), 1, 1, "shape \\(n_images, H, W\\)"),
        (np.zeros((2, 0, 5)), 1, 1, "at least one pixel"),
        (np.zeros((0, 5, 5)), 1, 1, "0 sample"),
        (np.array([[1.0, np.nan], [0.0, 0.0]]), 1, 1, "NaN"),
        (np.array([[1.0, np.inf], [0.0, 0.0]]), 1, 1, "infinity"),
        (np.array([["a", "b"], ["c", "d"]]), 1, 1, "real numbers"),
        (np.zeros((3, 3), dtype=complex), 1, 1, "real numbers"),
        (np.zeros((6, 5)), 0, 1, "patch_size must be >= 1"),
        (np.zeros((6, 5)), 6, 1, "patch_size must be at most the smaller image side, 5"),
        (np.zeros((6, 5)), 2.0, 1, "patch_size must be of type Integral"),
        (np.zeros((6, 5)), True, 1, "patch_size must be of type Integral"),
        (np.zeros((6, 5)), 3, 0, "stride must be >= 1"),
        (np.zeros((6, 5)), 3, 4, "stride must be at most patch_size=3"),
        (np.zeros((6, 5)), 3, None, "stride must be of type Integral"),
    ],
)
def test_extract_bad_inputs(images, patch_size, stride, match):
    with pytest.raises(ValueError, match=match):
        extract_patches(images, patch_size, stride)


def test_average_bad_inputs():
    P = np.zeros((2 * 16, 9))  # two 6x6 images, m=3, s=1: 16 patches each
    with pytest.raises(ValueError, match="2-dimensional"):
        average_patches(P.ravel(), (6, 6), 3)
    with pytest.raises(ValueError, match="9 values each, but patch_size=2 needs 4"):
        average_patches(P, (6, 6), 2)
    with pytest.raises(ValueError, match="not a multiple of 16"):
        average_patches(P[:-1], (6, 6), 3)
    with pytest.raises(ValueError, match="got 32 patches, but 3 image"):
        average_patches(P, (3, 6, 6), 3)
    with pytest.raises(ValueError, match="image_shape must be a tuple of ints"):
        average_patches(P, (6,), 3)
    with pytest.raises(ValueError, match="image_shape must be a tuple of ints"):
        average_patches(P, (6.0, 6), 3)
    with pytest.raises(ValueError, match="image_shape must be a tuple of ints"):
        average_patches(P, 6, 3)
    with pytest.raises(ValueError, match="H >= 1 and W >= 1"):
        average_patches(P, (0, 6), 3)
    with pytest.raises(ValueError, match="at least one image"):
        average_patches(P, (0, 6, 6), 3)
    with pytest.raises(ValueError, match="patch_size must be at most"):
        average_patches(P, (6, 6), 7)
    with pytest.raises(ValueError, match="stride must be at most"):
        average_patches(P, (6, 6), 3, 4)
    bad = P.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="patches contains NaN"):
        average_patches(bad, (6, 6), 3)
    # NaN is found through the output, so also in a patch of weight 0.
    w = np.ones(32)
    w[3] = 0.0
    with pytest.raises(ValueError, match="patches contains NaN"):
        average_patches(bad, (6, 6), 3, weights=w)
    bad[3, 4] = -np.inf
    with pytest.raises(ValueError, match="patches contains infinity"):
        average_patches(bad.astype(np.float32), (6, 6), 3)
    with pytest.raises(ValueError, match="real numbers"):
        average_patches(P.astype(complex), (6, 6), 3)
    with pytest.raises(ValueError, match="0 patches"):
        average_patches(P[:0], (6, 6), 3)
    with pytest.raises(ValueError, match="overflowed float64"):
        average_patches(np.full((16, 9), 1e308), (6, 6), 3)
    with pytest.raises(ValueError, match="overflowed float64"):
        average_patches(P + 1.0, (6, 6), 3, weights=np.full(32, 1e308))
    with pytest.raises(ValueError, match="weights must have shape \\(32,\\)"):
        average_patches(P, (6, 6), 3, weights=np.ones(31))
    with pytest.raises(ValueError, match="weights must be non-negative"):
        average_patches(P, (6, 6), 3, weights=np.r_[-1.0, np.ones(31)])
    with pytest.raises(ValueError, match="weights must be finite"):
        average_patches(P, (6, 6), 3, weights=np.r_[np.nan, np.ones(31)])
    with pytest.raises(ValueError, match="weights must hold real numbers"):
        average_patches(P, (6, 6), 3, weights=np.array(["a"] * 32))
    # The corner patch of image 1 has weight 0: its corner pixel has no weight.
    w = np.ones(32)
    w[16] = 0.0
    with pytest.raises(
        ValueError, match="1 image\\(s\\) \\(the first is image 1\\).*positive weight"
    ):
        average_patches(P, (6, 6), 3, weights=w)
    with pytest.raises(ValueError, match="the first is image 0"):
        average_patches(P, (6, 6), 3, weights=np.zeros(32))


def test_patch_positions_bad_inputs():
    with pytest.raises(ValueError, match="length must be >= 1"):
        patch_positions(0, 1, 1)
    with pytest.raises(ValueError, match="patch_size must be at most"):
        patch_positions(4, 5, 1)
    with pytest.raises(ValueError, match="stride must be at most"):
        patch_positions(10, 3, 4)
    with pytest.raises(ValueError, match="length must be of type Integral"):
        patch_positions(10.0, 3, 1)


# --------------------------------------------------------------------------
# out=, and the patch sizes with their own copy loops
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("m, s", [(4, 1), (8, 1), (8, 3), (12, 2), (16, 1), (16, 5), (7, 2)])
def test_extract_specialised_patch_sizes(m, s, dtype):
    """m = 4, 8 and 16 have constant-size copy loops in the kernel; others the generic one."""
    rng = np.random.default_rng(m * 10 + s)
    X = rng.standard_normal((3, 29, 23)).astype(dtype)
    P = extract_patches(X, m, s)
    assert_array_equal(P, ref_extract(X, m, s).astype(dtype))
    assert_allclose(
        average_patches(P, X.shape, m, s), X, rtol=1e-6 if dtype == np.float32 else 1e-12
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_extract_into_out(dtype):
    rng = np.random.default_rng(8)
    X = rng.standard_normal((5, 13, 11)).astype(dtype)
    expected = extract_patches(X, 4, 3)
    out = np.full_like(expected, np.nan)
    got = extract_patches(X, 4, 3, out=out)
    assert got is out
    assert_array_equal(out, expected)
    # Reused: every value is overwritten.
    Y = rng.standard_normal(X.shape).astype(dtype)
    assert extract_patches(Y, 4, 3, out=out, n_threads=2) is out
    assert_array_equal(out, ref_extract(Y, 4, 3).astype(dtype))
    # Integer images compute in float64, so out must be float64.
    Xi = rng.integers(0, 9, (2, 6, 6))
    out64 = np.empty((2 * 16, 9))
    assert_array_equal(extract_patches(Xi, 3, out=out64), ref_extract(Xi, 3, 1))


def test_extract_out_rejected():
    X = np.zeros((2, 6, 6))
    good = np.empty((32, 9))
    extract_patches(X, 3, out=good)
    with pytest.raises(ValueError, match="shape \\(32, 9\\) and dtype float64"):
        extract_patches(X, 3, out=np.empty((31, 9)))
    with pytest.raises(ValueError, match="dtype float64"):
        extract_patches(X, 3, out=np.empty((32, 9), np.float32))
    with pytest.raises(ValueError, match="dtype float32"):
        extract_patches(X.astype(np.float32), 3, out=good)
    with pytest.raises(ValueError, match="C-contiguous"):
        extract_patches(X, 3, out=np.empty((9, 32)).T)
    readonly = np.empty((32, 9))
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        extract_patches(X, 3, out=readonly)
    with pytest.raises(ValueError, match="NumPy array"):
        extract_patches(X, 3, out=[[0.0] * 9] * 32)
    big = np.zeros(2 * 36 + 32 * 9)
    images = big[:72].reshape(2, 6, 6)
    with pytest.raises(ValueError, match="share memory"):
        extract_patches(images, 3, out=big[:288].reshape(32, 9))
