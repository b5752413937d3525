"""PatchDenoiser: the three inference methods against brute-force references."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from gmmfast import ConvergenceWarning
from gmmfast.denoise import PatchDenoiser


def smooth_images(n, size, rng):
    """Images with structure a patch prior can learn: blurred blobs in [0, 1]."""
    from scipy.ndimage import gaussian_filter

    raw = rng.random((n, size, size)) < 0.08
    return np.clip(np.stack([gaussian_filter(r.astype(float), 1.5) * 6 for r in raw]), 0, 1)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    clean = smooth_images(60, 16, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # stride = patch size: patches tile the image, so averaging is the identity
        dn = PatchDenoiser(4, 3, stride=4, reg_covar=1e-3, random_state=0, max_iter=50).fit(clean)
    test = smooth_images(4, 16, rng)
    noisy = test + 0.1 * rng.standard_normal(test.shape)
    return dn, test, noisy


def brute_force(dn, noisy, sigma, posterior_mean):
    """Per patch: responsibilities from N(y_c | mu_k, Sigma_k + s^2 I), Wiener estimates."""
    gm, m = dn.mixture_, dn.patch_size
    out = np.empty_like(noisy)
    for i, img in enumerate(noisy):
        for r in range(0, img.shape[0], m):
            for c in range(0, img.shape[1], m):
                y = img[r:r + m, c:c + m].ravel()
                dc = y.mean()
                yc = y - dc
                logp, est = [], []
                for w, mu, cov in zip(gm.weights_, gm.means_, gm.covariances_):
                    noisy_cov = cov + sigma**2 * np.eye(m * m)
                    logp.append(np.log(w) + multivariate_normal(mu, noisy_cov).logpdf(yc))
                    est.append(mu + cov @ np.linalg.solve(noisy_cov, yc - mu))
                logp = np.array(logp)
                resp = np.exp(logp - logsumexp(logp))
                z = resp @ np.array(est) if posterior_mean else est[int(np.argmax(logp))]
                out[i, r:r + m, c:c + m] = (z + dc).reshape(m, m)
    return out


@pytest.mark.parametrize("method", ["map", "posterior_mean"])
def test_patch_methods_match_brute_force(fitted, method):
    dn, _, noisy = fitted
    got = dn.denoise(noisy, 0.1, method=method)
    np.testing.assert_allclose(got, brute_force(dn, noisy, 0.1, method == "posterior_mean"), atol=1e-9)


def test_epll_step_is_the_closed_form_update(fitted):
    """One EPLL step: x = (y / s^2 + beta c p) / (1 / s^2 + beta c), p the MAP patch average at noise 1/beta."""
    dn, _, noisy = fitted
    beta = 50.0
    got = dn.denoise(noisy, 0.1, method="epll", betas=[beta])
    patch = brute_force(dn, noisy, 1 / np.sqrt(beta), posterior_mean=False)
    lam = 1 / 0.1**2
    np.testing.assert_allclose(got, (lam * noisy + beta * patch) / (lam + beta), atol=1e-9)


@pytest.mark.parametrize("method", ["map", "posterior_mean", "epll"])
def test_every_method_removes_noise(fitted, method):
    dn, clean, noisy = fitted
    out = dn.denoise(noisy, 0.1, method=method)
    assert out.shape == noisy.shape and out.dtype == np.float64
    assert np.mean((out - clean) ** 2) < 0.6 * np.mean((noisy - clean) ** 2)


def test_overlapping_patches_and_single_image():
    rng = np.random.default_rng(1)
    clean = smooth_images(30, 14, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dn = PatchDenoiser(5, 2, stride=1, reg_covar=1e-3, random_state=0, max_iter=30).fit(clean)
    noisy = clean[0] + 0.15 * rng.standard_normal(clean[0].shape)
    out = dn.denoise(noisy, 0.15, method="epll")
    assert out.shape == (14, 14)
    assert np.mean((out - clean[0]) ** 2) < 0.5 * np.mean((noisy - clean[0]) ** 2)


def test_save_load_round_trip(fitted, tmp_path):
    dn, _, noisy = fitted
    dn.save(tmp_path / "d.npz")
    loaded = PatchDenoiser.load(tmp_path / "d.npz")
    assert loaded.patch_size == dn.patch_size and loaded.stride == dn.stride
    np.testing.assert_array_equal(loaded.denoise(noisy, 0.1, method="map"), dn.denoise(noisy, 0.1, method="map"))


def test_bad_input(fitted):
    dn, _, noisy = fitted
    with pytest.raises(ValueError, match="sigma"):
        dn.denoise(noisy, 0.0)
    with pytest.raises(ValueError, match="method"):
        dn.denoise(noisy, 0.1, method="wiener")
    bad = noisy.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        dn.denoise(bad, 0.1)
    with pytest.raises(ValueError, match="shape"):
        dn.denoise(noisy[0, 0], 0.1)
    with pytest.raises(ValueError, match="betas"):
        dn.denoise(noisy, 0.1, method="epll", betas=[1.0, -2.0])
    with pytest.raises(ValueError, match="covariance_type"):
        PatchDenoiser(4, 2, covariance_type="tied").fit(noisy)


def test_blur_matrix_is_the_patch_convolution():
    from scipy.ndimage import convolve

    from gmmfast.denoise import blur_matrix, gaussian_kernel

    k = gaussian_kernel(1.0)
    assert k.shape == (7, 7) and np.isclose(k.sum(), 1.0)
    z = np.random.default_rng(0).random((5, 5))
    np.testing.assert_allclose(blur_matrix(k, 5) @ z.ravel(), convolve(z, k, mode="constant").ravel(), atol=1e-14)


@pytest.mark.parametrize("method", ["map", "posterior_mean"])
def test_patch_deblur_matches_brute_force(fitted, method):
    """Per-patch deblurring: N(y | W mu_k, W Sigma_k W^T + s^2 I) and mu + Sigma W^T S^-1 (y - W mu)."""
    from gmmfast.denoise import blur_matrix, gaussian_kernel

    dn, _, noisy = fitted
    k = gaussian_kernel(0.7, radius=1)
    W = blur_matrix(k, dn.patch_size)
    gm, m, sigma = dn.mixture_, dn.patch_size, 0.1
    expected = np.empty_like(noisy)
    for i, img in enumerate(noisy):
        for r in range(0, 16, m):
            for c in range(0, 16, m):
                y = img[r:r + m, c:c + m].ravel()
                dc = y.mean()
                yc = y - dc
                logp, est = [], []
                for w, mu, cov in zip(gm.weights_, gm.means_, gm.covariances_):
                    S = W @ cov @ W.T + sigma**2 * np.eye(m * m)
                    logp.append(np.log(w) + multivariate_normal(W @ mu, S).logpdf(yc))
                    est.append(mu + cov @ W.T @ np.linalg.solve(S, yc - W @ mu))
                logp = np.array(logp)
                resp = np.exp(logp - logsumexp(logp))
                z = resp @ np.array(est) if method == "posterior_mean" else est[int(np.argmax(logp))]
                expected[i, r:r + m, c:c + m] = (z + dc).reshape(m, m)
    np.testing.assert_allclose(dn.deblur(noisy, k, sigma, method=method), expected, atol=1e-9)


def test_epll_deblur_step_solves_its_linear_system(fitted):
    """With one beta, the EPLL deblur output solves (lam K^T K + beta C) x = lam K^T y + beta C p."""
    from gmmfast.denoise import _blur, gaussian_kernel

    dn, _, noisy = fitted
    k = gaussian_kernel(0.7, radius=1)
    beta, sigma = 30.0, 0.1
    x = dn.deblur(noisy, k, sigma, method="epll", betas=[beta], cg_iter=500)
    p = dn._one_pass(noisy, 1 / beta, posterior_mean=False)  # patch step from x0 = y
    lam = 1 / sigma**2
    lhs = lam * _blur(_blur(x, k), k, adjoint=True) + beta * x  # coverage 1 (stride = patch size)
    rhs = lam * _blur(noisy, k, adjoint=True) + beta * p
    assert np.abs(lhs - rhs).max() < 1e-4 * np.abs(rhs).max()


def test_deblur_rejects_bad_kernels(fitted):
    dn, _, noisy = fitted
    for bad in (np.ones((2, 2)), np.ones(3), np.full((3, 3), np.nan)):
        with pytest.raises(ValueError, match="kernel"):
            dn.deblur(noisy, bad, 0.1)
