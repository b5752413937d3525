"""Clustering with a mixture: non-circular clusters, choosing K without labels."""

from __future__ import annotations

import numpy as np
import pytest

from gmmfast import GaussianMixture, select_mixture
from gmmfast.metrics import clustering_scores
from gmmfast.mixture import MixtureSelection
from gmmfast.mixture._kmeans import kmeans
from gmmfast.synthetic import NONCIRCULAR_SETTINGS, make_noncircular

KINDS = sorted(NONCIRCULAR_SETTINGS)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_mixture_beats_kmeans_on_noncircular_clusters(kind, seed):
    """The acceptance setting: full-covariance GMM (defaults, n_init=5) ARI >= 0.95,
    k-means ARI <= 0.6, on each generator setting."""
    X, y = make_noncircular(kind, random_state=seed)
    gmm = GaussianMixture(3, n_init=5, random_state=seed).fit(X)
    labels, _ = kmeans(X, 3, np.random.RandomState(seed), n_threads=1)
    assert clustering_scores(y, gmm.predict(X))["ari"] >= 0.95
    assert clustering_scores(y, labels)["ari"] <= 0.6


@pytest.mark.parametrize("kind", KINDS)
def test_bic_chooses_three_components(kind):
    X, _ = make_noncircular(kind, random_state=0)
    selection = select_mixture(X, range(1, 7), n_init=5, random_state=0)
    assert isinstance(selection, MixtureSelection)
    assert selection.best_params_ == {"n_components": 3, "covariance_type": "full"}
    assert [r["n_components"] for r in selection.results_] == [1, 2, 3, 4, 5, 6]
    bics = [r["bic"] for r in selection.results_]
    assert selection.best_estimator_.bic(X) == pytest.approx(min(bics))
    assert "(chosen)" in selection.table()


def test_make_noncircular_shapes_counts_and_reproducibility():
    X, y = make_noncircular("unequal", 1001, random_state=5)
    assert X.shape == (1001, 2) and y.shape == (1001,)
    assert np.bincount(y).tolist() == [801, 100, 100]
    _, tiny = make_noncircular("unequal", 3, random_state=0)
    assert np.bincount(tiny).tolist() == [1, 1, 1]  # never an empty cluster
    X2, _ = make_noncircular("unequal", 1001, random_state=5)
    np.testing.assert_array_equal(X, X2)
    X3, _ = make_noncircular("unequal", 1001, random_state=np.random.default_rng(5))
    np.testing.assert_array_equal(X, X3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kind="round"), "kind must be one of"),
        (dict(kind="stripes", n_samples=2), "at least 3"),
        (dict(kind="stripes", n_samples=10.5), "n_samples must be an int"),
        (dict(kind="stripes", random_state="x"), "random_state must be"),
    ],
)
def test_make_noncircular_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_noncircular(**kwargs)


def test_heldout_criterion_refits_on_all_data_and_covariance_types():
    X, _ = make_noncircular("anisotropic", 600, random_state=1)
    selection = select_mixture(
        X,
        [2, 3],
        covariance_types=("full", "diag"),
        criterion="heldout",
        n_init=2,
        random_state=0,
    )
    assert len(selection.results_) == 4
    assert all("heldout_log_likelihood" in r for r in selection.results_)
    best = max(selection.results_, key=lambda r: r["heldout_log_likelihood"])
    assert selection.best_params_ == {
        "n_components": best["n_components"],
        "covariance_type": best["covariance_type"],
    }
    assert selection.best_estimator_.n_features_in_ == 2
    # Refitted on all 600 samples: its training score is over X, not the 80% split.
    np.testing.assert_allclose(
        selection.best_estimator_.score(X), selection.best_estimator_.score_samples(X).mean()
    )


def test_select_mixture_does_not_modify_input():
    X, _ = make_noncircular("stripes", 300, random_state=0)
    copy = X.copy()
    select_mixture(X, [1, 2], random_state=0)
    np.testing.assert_array_equal(X, copy)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(criterion="silhouette"), "criterion must be one of"),
        (dict(n_components=[]), "no candidate"),
        (dict(n_components=[0, 2]), "positive ints"),
        (dict(n_components="3"), "positive ints"),
        (dict(covariance_types="round"), "covariance_types"),
        (dict(n_components=[50]), "fewer than every candidate"),
        (dict(criterion="heldout", validation_fraction=1.0), "validation_fraction"),
        (dict(n_init=2, covariance_type="diag"), "covariance_type is chosen"),
    ],
)
def test_select_mixture_bad_input(kwargs, message):
    X, _ = make_noncircular("stripes", 30, random_state=0)
    with pytest.raises(ValueError, match=message):
        select_mixture(X, **{"n_components": [1, 2], **kwargs})


def test_select_mixture_rejects_nan():
    X = np.ones((20, 2)) * np.arange(20)[:, None]
    X[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        select_mixture(X, [1, 2])


def test_public_k_means():
    from gmmfast.mixture import k_means

    X, y = make_noncircular("anisotropic", 300, random_state=0)
    centers, labels, inertia = k_means(X, 3, random_state=0)
    assert labels.shape == (300,) and centers.shape == (3, 2)
    np.testing.assert_allclose(inertia, ((X - centers[labels]) ** 2).sum())
    _, again, _ = k_means(X, 3, random_state=0)
    np.testing.assert_array_equal(labels, again)
    _, labels32, _ = k_means(X.astype(np.float32), 3, random_state=0)
    assert clustering_scores(labels, labels32)["ari"] > 0.99
    with pytest.warns(UserWarning, match="distinct clusters"):
        k_means(np.repeat(X[:2], 10, axis=0), 5, random_state=0)
    with pytest.raises(ValueError, match="tol"):
        k_means(X, 3, tol=-1.0)
    with pytest.raises(ValueError, match="at least 3"):
        k_means(X[:2], 3)
    with pytest.raises(ValueError, match="n_clusters"):
        k_means(X, 0)


def test_example_script_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "clustering_noncircular.py"
    if not script.exists():
        pytest.skip("examples/ is not part of the sdist")
    out = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path / "c.png")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "stripes" in out.stdout and "BIC chooses K = 3" in out.stdout


def test_mixture_scores_without_labels():
    from gmmfast.metrics import mixture_scores

    X, _ = make_noncircular("anisotropic", 600, random_state=0)
    model = GaussianMixture(3, random_state=0).fit(X[:500])
    scores = mixture_scores(model, X[:500], X[500:])
    assert scores["bic"] == pytest.approx(model.bic(X[:500]))
    assert scores["aic"] == pytest.approx(model.aic(X[:500]))
    assert scores["log_likelihood"] == pytest.approx(model.score(X[:500]))
    assert scores["heldout_log_likelihood"] == pytest.approx(model.score(X[500:]))
    assert scores["n_parameters"] == 3 * (2 + 3) + 2
    assert "heldout_log_likelihood" not in mixture_scores(model, X[:500])


def test_select_mixture_huge_range_is_not_materialised():
    X, _ = make_noncircular("stripes", 30, random_state=0)
    selection = select_mixture(X, range(1, 10**12), n_init=1, max_iter=5, random_state=0)
    assert [r["n_components"] for r in selection.results_][-1] == 30
