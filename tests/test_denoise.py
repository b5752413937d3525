"""PatchDenoiser: the three inference methods against brute-force references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from gmmfast import ConvergenceWarning
from gmmfast.image import PatchDenoiser


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
        dn = PatchDenoiser(
            4,
            3,
            stride=4,
            reg_covar=1e-3,
            random_state=0,
            max_iter=50,
            clip=None,
            epll_init="noisy",
            epll_fidelity=1.0,
            epll_betas=(1, 4, 8, 16, 32),
        ).fit(clean)
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
                y = img[r : r + m, c : c + m].ravel()
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
                out[i, r : r + m, c : c + m] = (z + dc).reshape(m, m)
    return out


@pytest.mark.parametrize("method", ["map", "posterior_mean"])
def test_patch_methods_match_brute_force(fitted, method):
    dn, _, noisy = fitted
    got = dn.denoise(noisy, 0.1, method=method)
    np.testing.assert_allclose(
        got, brute_force(dn, noisy, 0.1, method == "posterior_mean"), atol=1e-9
    )


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
    np.testing.assert_array_equal(
        loaded.denoise(noisy, 0.1, method="map"), dn.denoise(noisy, 0.1, method="map")
    )


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

    from gmmfast.image import blur_matrix, gaussian_kernel

    k = gaussian_kernel(1.0)
    assert k.shape == (7, 7) and np.isclose(k.sum(), 1.0)
    z = np.random.default_rng(0).random((5, 5))
    np.testing.assert_allclose(
        blur_matrix(k, 5) @ z.ravel(), convolve(z, k, mode="constant").ravel(), atol=1e-14
    )
    W = blur_matrix(k, 5, "reflect")
    np.testing.assert_allclose(W @ z.ravel(), convolve(z, k, mode="reflect").ravel(), atol=1e-14)
    np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=1e-14)  # constants preserved


@pytest.mark.parametrize("boundary", ["reflect", "constant"])
@pytest.mark.parametrize("method", ["map", "posterior_mean"])
def test_patch_deblur_matches_brute_force(fitted, method, boundary):
    """Per-patch deblurring: N(y | W mu_k, W Sigma_k W^T + s^2 I) and mu + Sigma W^T S^-1 (y - W mu)."""
    from gmmfast.image import blur_matrix, gaussian_kernel

    dn, _, noisy = fitted
    k = gaussian_kernel(0.7, radius=1)
    W = blur_matrix(k, dn.patch_size, boundary)
    gm, m, sigma = dn.mixture_, dn.patch_size, 0.1
    expected = np.empty_like(noisy)
    for i, img in enumerate(noisy):
        for r in range(0, 16, m):
            for c in range(0, 16, m):
                y = img[r : r + m, c : c + m].ravel()
                dc = y.mean()
                yc = y - dc
                logp, est = [], []
                for w, mu, cov in zip(gm.weights_, gm.means_, gm.covariances_):
                    S = W @ cov @ W.T + sigma**2 * np.eye(m * m)
                    logp.append(np.log(w) + multivariate_normal(W @ mu, S).logpdf(yc))
                    est.append(mu + cov @ W.T @ np.linalg.solve(S, yc - W @ mu))
                logp = np.array(logp)
                resp = np.exp(logp - logsumexp(logp))
                z = (
                    resp @ np.array(est)
                    if method == "posterior_mean"
                    else est[int(np.argmax(logp))]
                )
                expected[i, r : r + m, c : c + m] = (z + dc).reshape(m, m)
    dn.set_params(blur_boundary=boundary)
    try:
        np.testing.assert_allclose(dn.deblur(noisy, k, sigma, method=method), expected, atol=1e-9)
    finally:
        dn.set_params(blur_boundary="reflect")


def test_epll_deblur_step_solves_its_linear_system(fitted):
    """With one beta, the EPLL deblur output solves (lam K^T K + beta C) x = lam K^T y + beta C p."""
    from gmmfast.image import blur as _blur
    from gmmfast.image import gaussian_kernel

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


# --------------------------------------------------------------------------
# EPLL options, noise estimation, model search, chunking, persistence
# --------------------------------------------------------------------------


def test_epll_options_step_closed_form(fitted):
    """fidelity scales the data term; init='map' starts from the one-pass MAP
    estimate; patch_step='posterior_mean' uses the posterior-mean patch estimates."""
    from sklearn.base import clone

    dn, _, noisy = fitted
    sigma, beta = 0.1, 50.0
    lam = 3.0 / sigma**2
    dn2 = clone(dn).set_params(epll_fidelity=3.0, epll_init="map", epll_patch_step="posterior_mean")
    dn2.mixture_ = dn.mixture_
    got = dn2.denoise(noisy, sigma, method="epll", betas=[beta])
    x0 = brute_force(dn, noisy, sigma, posterior_mean=False)
    patch = brute_force(dn, x0, 1 / np.sqrt(beta), posterior_mean=True)
    np.testing.assert_allclose(got, (lam * noisy + beta * patch) / (lam + beta), atol=1e-9)
    # epll_betas are in units of 1 / sigma^2
    dn2.set_params(epll_betas=(beta * sigma**2,))
    np.testing.assert_allclose(dn2.denoise(noisy, sigma, method="epll"), got, atol=1e-12)


def test_epll_bad_options(fitted):
    from sklearn.base import clone

    dn, _, noisy = fitted
    for params, match in [
        ({"epll_init": "zero"}, "epll_init"),
        ({"epll_patch_step": "mode"}, "epll_patch_step"),
        ({"epll_fidelity": 0.0}, "epll_fidelity"),
        ({"epll_betas": ()}, "epll_betas"),
    ]:
        bad = clone(dn).set_params(**params)
        bad.mixture_ = dn.mixture_
        with pytest.raises(ValueError, match=match):
            bad.denoise(noisy, 0.1, method="epll")


def test_estimate_noise_sigma():
    from gmmfast.image import estimate_noise_sigma

    rng = np.random.default_rng(0)
    for sigma in (0.05, 0.1, 0.2):
        pure = sigma * rng.standard_normal((20, 28, 28))
        assert abs(estimate_noise_sigma(pure) / sigma - 1) < 0.03
    for sigma in (0.1, 0.2):  # images with edges: biased up a little, by less than 10%
        clean = smooth_images(20, 28, rng)
        est = estimate_noise_sigma(clean + sigma * rng.standard_normal(clean.shape))
        assert 1 <= est / sigma < 1.1
    # linear ramps are invisible to the diagonal Haar band
    ramp = np.add.outer(np.arange(16.0), 2 * np.arange(16.0))
    assert estimate_noise_sigma(ramp) == 0.0
    # odd sides: the last row / column is left out
    assert abs(estimate_noise_sigma(0.1 * rng.standard_normal((101, 77))) / 0.1 - 1) < 0.1
    with pytest.raises(ValueError, match="2 x 2"):
        estimate_noise_sigma(np.zeros((1, 5)))


def test_sigma_none_uses_the_estimate(fitted):
    from gmmfast.image import estimate_noise_sigma

    dn, _, noisy = fitted
    sigma = estimate_noise_sigma(noisy)
    for method in ("map", "epll"):
        np.testing.assert_array_equal(
            dn.denoise(noisy, method=method), dn.denoise(noisy, sigma, method=method)
        )
    with pytest.raises(ValueError, match="estimated noise sigma is 0"):
        dn.denoise(np.zeros((16, 16)))
    with pytest.raises(ValueError, match="sigma"):
        dn.denoise(noisy, "0.1")


def test_select_patch_prior_picks_by_validation_psnr():
    from gmmfast.image import psnr, select_patch_prior

    rng = np.random.default_rng(2)
    train, val = smooth_images(40, 16, rng), smooth_images(6, 16, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        best, table = select_patch_prior(
            train,
            val,
            0.15,
            patch_sizes=(1, 4),
            n_components=(1, 3),
            strides=(1, 2, 4),
            reg_covar=1e-3,
            max_iter=30,
            clip=None,
        )
    # strides above the patch size are skipped: m=1 has only stride 1
    assert [(r["patch_size"], r["n_components"], r["stride"]) for r in table] == [
        (1, 1, 1),
        (1, 3, 1),
        (4, 1, 1),
        (4, 1, 2),
        (4, 1, 4),
        (4, 3, 1),
        (4, 3, 2),
        (4, 3, 4),
    ]
    top = max(table, key=lambda r: r["psnr"])
    assert (best.patch_size, best.n_components, best.stride) == (
        top["patch_size"],
        top["n_components"],
        top["stride"],
    )
    # 1 x 1 patches cannot use spatial structure: a 4 x 4 prior wins
    assert best.patch_size == 4
    # the table's PSNR is reproducible from the returned model and the documented corruption
    noisy = val + 0.15 * np.random.default_rng(0).standard_normal(val.shape)
    assert psnr(val, best.denoise(noisy, 0.15, method="map")) == pytest.approx(
        top["psnr"], abs=1e-12
    )
    with pytest.raises(ValueError, match="no stride"):
        select_patch_prior(train, val, 0.15, patch_sizes=(2,), strides=(3,))


def test_fit_draws_max_patches_real_patches():
    from gmmfast.image import extract_patches

    rng = np.random.default_rng(3)
    clean = smooth_images(10, 12, rng)
    seen = {}

    class Spy(PatchDenoiser):
        pass

    import gmmfast.image._denoiser as denoiser_module

    original = denoiser_module.GaussianMixture.fit

    def spy_fit(self, X, y=None):
        seen["X"] = X.copy()
        return original(self, X)

    denoiser_module.GaussianMixture.fit = spy_fit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            Spy(4, 2, stride=2, max_patches=37, remove_mean=False, random_state=0, max_iter=5).fit(
                clean
            )
    finally:
        denoiser_module.GaussianMixture.fit = original
    all_patches = extract_patches(clean, 4, 2)
    X = seen["X"]
    assert X.shape == (37, 16)
    matches = [np.flatnonzero((all_patches == row).all(axis=1)) for row in X]
    assert all(len(idx) for idx in matches)
    assert len({int(idx[0]) for idx in matches}) == 37  # drawn without replacement


def test_chunking_does_not_change_the_result(fitted, monkeypatch):
    import gmmfast.image._denoiser as denoiser_module

    rng = np.random.default_rng(4)
    clean = smooth_images(30, 14, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dn = PatchDenoiser(5, 3, stride=2, reg_covar=1e-3, random_state=0, max_iter=20).fit(clean)
    noisy = clean[:7] + 0.1 * rng.standard_normal(clean[:7].shape)
    whole = {m: dn.denoise(noisy, 0.1, method=m) for m in denoiser_module.METHODS}
    monkeypatch.setattr(
        denoiser_module, "CHUNK_PATCHES", 50
    )  # 36 patches an image: one image per chunk
    for m in denoiser_module.METHODS:
        np.testing.assert_allclose(dn.denoise(noisy, 0.1, method=m), whole[m], rtol=0, atol=1e-12)


def test_clip_and_float32(fitted):
    from sklearn.base import clone

    dn, clean, noisy = fitted
    raw = dn.denoise(noisy, 0.1, method="map")
    assert raw.min() < 0 or raw.max() > 1  # the fixture's denoiser does not clip
    clipped = clone(dn).set_params(clip=(0.0, 1.0))
    clipped.mixture_ = dn.mixture_
    np.testing.assert_array_equal(clipped.denoise(noisy, 0.1, method="map"), np.clip(raw, 0, 1))
    f32 = clone(dn).set_params(dtype=np.float32)
    f32.mixture_ = dn.mixture_
    for method in ("map", "posterior_mean", "epll"):
        out = f32.denoise(noisy, 0.1, method=method)
        assert out.dtype == np.float64
        np.testing.assert_allclose(out, dn.denoise(noisy, 0.1, method=method), atol=1e-4)


def test_save_load_keeps_inference_settings(fitted, tmp_path):
    from sklearn.base import clone

    dn, _, noisy = fitted
    custom = clone(dn).set_params(
        epll_betas=(1.0, 3.0),
        epll_fidelity=2.0,
        epll_init="posterior_mean",
        epll_patch_step="posterior_mean",
        clip=(0.0, 0.9),
        dtype=np.float32,
        cg_iter=7,
    )
    custom.mixture_ = dn.mixture_
    custom.save(tmp_path / "c.npz")
    loaded = PatchDenoiser.load(tmp_path / "c.npz")
    for name in ("epll_betas", "epll_fidelity", "epll_init", "epll_patch_step", "clip", "cg_iter"):
        assert getattr(loaded, name) == getattr(custom, name), name
    assert loaded.dtype is np.float32
    np.testing.assert_array_equal(loaded.denoise(noisy, 0.1), custom.denoise(noisy, 0.1))


def test_fit_twice_drops_cached_filters():
    rng = np.random.default_rng(5)
    a, b = smooth_images(20, 12, rng), 0.5 * smooth_images(20, 12, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dn = PatchDenoiser(4, 2, stride=4, reg_covar=1e-3, random_state=0, max_iter=10, clip=None)
        noisy = a[:2] + 0.1 * rng.standard_normal(a[:2].shape)
        dn.fit(a).denoise(noisy, 0.1, method="map")
        refit = dn.fit(b).denoise(noisy, 0.1, method="map")
        fresh = PatchDenoiser(
            4, 2, stride=4, reg_covar=1e-3, random_state=0, max_iter=10, clip=None
        ).fit(b)
    np.testing.assert_array_equal(refit, fresh.denoise(noisy, 0.1, method="map"))


def test_verbose_reports_progress(fitted, capsys):
    from sklearn.base import clone

    dn, _, noisy = fitted
    loud = clone(dn).set_params(verbose=1)
    loud.mixture_ = dn.mixture_
    loud.denoise(noisy, method="epll")
    out = capsys.readouterr().out
    assert "estimated noise sigma" in out and "EPLL step 5/5" in out


def test_epll_deblur_beats_patchwise_deblurring():
    """EPLL treats the blur over the whole image; per-patch MAP models only the
    blur inside each patch. With the data term weighted m^2 / sigma^2 (Zoran &
    Weiss), EPLL must beat both per-patch MAP and the observation by a margin;
    with the unscaled weight 1 / sigma^2 (64 or 25 covering patches per pixel
    against one data term) the image step barely moves from the blurred patch
    average, which was the cause of the weak EPLL deblurring before."""
    from gmmfast.image import blur, gaussian_kernel, psnr

    rng = np.random.default_rng(6)
    clean = smooth_images(80, 16, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dn = PatchDenoiser(
            5,
            4,
            stride=1,
            reg_covar=1e-4,
            random_state=0,
            max_iter=50,
            epll_init="noisy",
            epll_betas=(1, 4, 8, 16, 32),
            epll_fidelity=25.0,
        ).fit(clean[:70])
    k = gaussian_kernel(1.0)
    test = clean[70:]
    observed = blur(test, k) + 0.02 * rng.standard_normal(test.shape)
    scores = {m: psnr(test, dn.deblur(observed, k, 0.02, method=m)) for m in ("map", "epll")}
    scores["observed"] = psnr(test, np.clip(observed, 0, 1))
    dn.set_params(epll_fidelity=1.0)
    scores["epll, fidelity 1"] = psnr(test, dn.deblur(observed, k, 0.02, method="epll"))
    assert scores["epll"] > max(scores["map"], scores["observed"]) + 3.0, scores
    assert scores["epll"] > scores["epll, fidelity 1"] + 3.0, scores


def test_blur_adjoint():
    from gmmfast.image import blur, gaussian_kernel

    rng = np.random.default_rng(7)
    k = rng.random((3, 5))  # not symmetric: convolution and correlation differ
    x, y = rng.standard_normal((2, 3, 9, 8))
    np.testing.assert_allclose(
        np.sum(blur(x, k) * y), np.sum(x * blur(y, k, adjoint=True)), rtol=1e-12
    )
    np.testing.assert_allclose(blur(x[0], k), blur(x, k)[0], rtol=1e-15)
    assert not np.allclose(blur(x, k), blur(x, k, adjoint=True))
    assert gaussian_kernel(0.5).shape == (5, 5) and gaussian_kernel(2.0, radius=2).shape == (5, 5)


def test_fit_on_images_of_different_sizes():
    from gmmfast.image import extract_patches

    rng = np.random.default_rng(8)
    a, b = smooth_images(1, 20, rng)[0], smooth_images(1, 13, rng)[0][:, :11]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        everything = PatchDenoiser(
            4, 2, remove_mean=False, max_patches=10**6, random_state=0, max_iter=5
        ).fit([a, b])
        gm = everything.mixture_
        pooled = np.vstack([extract_patches(a, 4), extract_patches(b, 4)])
        # with every patch used the mixture matches a fit on the pooled patches
        from gmmfast import GaussianMixture

        ref = GaussianMixture(
            2, reg_covar=1e-4, random_state=np.random.RandomState(0), max_iter=5, tol=1e-3
        ).fit(pooled)
        np.testing.assert_allclose(gm.means_, ref.means_, atol=1e-10)
        sub = PatchDenoiser(
            4, 2, remove_mean=False, max_patches=50, random_state=0, max_iter=5
        ).fit([a, b])
    assert sub.mixture_.means_.shape == (2, 16)
    with pytest.raises(ValueError, match="patch_size must be at most"):
        PatchDenoiser(12, 2).fit([a, b])


def test_select_patch_prior_for_deblurring():
    from gmmfast.image import gaussian_kernel, select_patch_prior

    rng = np.random.default_rng(9)
    train, val = smooth_images(30, 14, rng), smooth_images(4, 14, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        best, table = select_patch_prior(
            train,
            val,
            0.05,
            patch_sizes=(4,),
            n_components=(2,),
            strides=(2, 4),
            kernel=gaussian_kernel(0.7, radius=1),
            method="epll",
            max_iter=10,
        )
    assert len(table) == 2 and best.stride in (2, 4)
    assert all(np.isfinite(r["psnr"]) and r["restore_s"] >= 0 for r in table)


def test_default_epll_improves_on_one_pass():
    """The default schedule (start from the one-pass MAP estimate, betas 16..128 / sigma^2)
    must improve on it: EPLL's consistency between overlapping patches is its point."""
    from gmmfast.image import psnr

    rng = np.random.default_rng(1)
    clean = smooth_images(60, 14, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dn = PatchDenoiser(5, 4, stride=1, reg_covar=1e-3, random_state=0, max_iter=30).fit(
            clean[:50]
        )
    test = clean[50:]
    for sigma in (0.1, 0.2):
        noisy = test + sigma * rng.standard_normal(test.shape)
        scores = {m: psnr(test, dn.denoise(noisy, sigma, method=m)) for m in ("map", "epll")}
        assert scores["epll"] > scores["map"] + 0.1, (sigma, scores)


def test_patch_denoiser_is_exported_at_top_level():
    """The issue's spelling, gmmfast.PatchDenoiser, is the class in gmmfast.image."""
    import gmmfast
    from gmmfast.image import PatchDenoiser as Direct

    assert gmmfast.PatchDenoiser is Direct
    assert "PatchDenoiser" in gmmfast.__all__


@pytest.mark.parametrize("sigma", [True, 0.0, -0.1, float("nan"), "0.1"])
def test_select_patch_prior_rejects_bad_sigma(sigma):
    from gmmfast.image import select_patch_prior

    images = np.random.RandomState(0).rand(4, 12, 12)
    with pytest.raises(ValueError, match="sigma"):
        select_patch_prior(images, images, sigma)
