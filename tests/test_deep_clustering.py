"""gmmfast.vae.DeepClustering: dense autoencoder, UMAP, Gaussian mixture (a few hundred images,
one or two epochs: nothing here depends on a long training run)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gmmfast import GaussianMixture  # noqa: E402
from gmmfast.metrics import clustering_scores  # noqa: E402
from gmmfast.vae import DeepClustering  # noqa: E402

SMALL = dict(hidden_sizes=(64, 32), embedding_size=5, batch_size=64, n_threads=1, gmm_n_init=2)


@pytest.fixture(scope="module")
def digits(mnist_sample):
    X, y, X_test, y_test = mnist_sample
    return X[:400], y[:400], X_test[:60]


@pytest.fixture(scope="module")
def fitted_umap(digits):
    pytest.importorskip("umap")
    X, _, _ = digits
    return DeepClustering(epochs=1, random_state=0, **SMALL).fit(X)


def test_pipeline_with_umap_one_epoch(fitted_umap, digits):
    X, y, X_test = digits
    model = fitted_umap
    assert model.labels_.shape == (400,) and set(model.labels_) <= set(range(10))
    assert model.embedding_.shape == (400, 10)  # manifold_size defaults to n_clusters
    assert isinstance(model.mixture_, GaussianMixture)
    assert model.mixture_.n_components == 10 and model.mixture_.init_params == "diverse"
    assert model.n_epochs_ == 1
    # The labels are the mixture's on the embedding (fit_predict's final E-step).
    np.testing.assert_array_equal(model.labels_, model.mixture_.predict(model.embedding_))
    assert set(model.timings_) == {"training", "embedding", "manifold", "mixture", "total"}
    assert all(t["cpu_seconds"] >= 0 and t["wall_seconds"] >= 0 for t in model.timings_.values())
    # New images: encoded, placed by UMAP, assigned by the mixture.
    proba = model.predict_proba(X_test)
    assert proba.shape == (60, 10) and np.allclose(proba.sum(1), 1)
    np.testing.assert_array_equal(model.predict(X_test), proba.argmax(1))
    assert model.transform(X_test).shape == (60, 10)
    assert model.encode(X_test).shape == (60, 5)
    # One epoch on 400 images already separates some digits: well above shuffled labels.
    chance = clustering_scores(np.random.default_rng(0).permutation(y), model.labels_)["nmi"]
    assert clustering_scores(y, model.labels_)["nmi"] > 2 * chance


def test_without_manifold_is_seeded_and_leaves_inputs_alone(digits):
    X, _, X_test = digits
    copy = X.copy()
    a = DeepClustering(epochs=2, manifold=None, random_state=3, **SMALL).fit(X)
    b = DeepClustering(epochs=2, manifold=None, random_state=3, **SMALL).fit(X)
    np.testing.assert_array_equal(X, copy)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.embedding_, b.embedding_)
    assert a.embedding_.shape == (400, 5) and a.manifold_ is None
    assert "manifold" not in a.timings_
    np.testing.assert_array_equal(a.fit_predict(X), a.labels_)
    assert a.predict(X_test).shape == (60,)


def test_umap_missing_names_the_extra(digits, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_umap(name, *args, **kwargs):
        if name == "umap":
            raise ImportError("No module named 'umap'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_umap)
    with pytest.raises(ImportError, match=r"gmmfast\[umap\]"):
        DeepClustering(epochs=1, **SMALL).fit(digits[0])


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(n_clusters=0), "n_clusters"),
        (dict(hidden_sizes=(64, -1)), "hidden_sizes"),
        (dict(hidden_sizes=5), "hidden_sizes"),
        (dict(embedding_size=0), "embedding_size"),
        (dict(manifold="tsne"), "manifold"),
        (dict(manifold_size=0), "manifold_size"),
        (dict(n_neighbors=1), "n_neighbors"),
        (dict(covariance_type="round"), "covariance_type"),
        (dict(gmm_n_init=0), "gmm_n_init"),
        (dict(epochs=0), "epochs"),
        (dict(learning_rate=-1.0), "learning_rate"),
    ],
)
def test_bad_parameters(digits, params, message):
    kw = {**SMALL, **params}
    with pytest.raises(ValueError, match=message):
        DeepClustering(**kw).fit(digits[0])


def test_bad_images_and_too_few(digits):
    X = digits[0]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        DeepClustering(epochs=1, manifold=None, **SMALL).fit(X * 255)
    with pytest.raises(ValueError, match="give more images"):
        DeepClustering(epochs=1, manifold=None, **SMALL).fit(X[:10])
    with pytest.raises(ValueError, match="NaN"):
        bad = X.copy()
        bad[0, 0] = np.nan
        DeepClustering(epochs=1, manifold=None, **SMALL).fit(bad)


def test_unfitted_model_raises():
    from gmmfast import NotFittedError

    with pytest.raises(NotFittedError):
        DeepClustering().predict(np.zeros((2, 784)))


def test_ctrl_c_in_training_keeps_the_autoencoder_and_stops(digits, monkeypatch, capsys):
    """Ctrl-C in epoch 2: the epoch-1 autoencoder is kept, no clustering is made, and the
    interrupt reaches the caller."""
    import gmmfast.vae._engine as engine

    X = digits[0][:120]
    calls = {"n": 0}
    real = engine.augment

    def interrupt_in_second_epoch(x, rotation, flip):
        calls["n"] += 1
        if calls["n"] > 2:  # 108 training images at batch 64: two batches per epoch
            raise KeyboardInterrupt
        return real(x, rotation, flip)

    monkeypatch.setattr(engine, "augment", interrupt_in_second_epoch)
    model = DeepClustering(epochs=5, manifold=None, random_state=0, **SMALL)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X)
    assert model.interrupted_ and model.best_epoch_ == 1
    assert not hasattr(model, "labels_") and not hasattr(model, "mixture_")
    assert model.encode(X).shape == (120, 5)
    assert "interrupted during epoch 2" in capsys.readouterr().err


def test_ctrl_c_in_a_refit_drops_the_previous_clustering(digits, monkeypatch):
    """Ctrl-C in a second fit keeps the new autoencoder's best epoch: the first fit's mixture,
    labels and embedding belong to another autoencoder and are dropped, not mixed with it."""
    import gmmfast.vae._engine as engine

    X = digits[0][:120]
    model = DeepClustering(3, epochs=1, manifold=None, random_state=0, **SMALL).fit(X)
    assert hasattr(model, "mixture_") and hasattr(model, "labels_")
    real, calls = engine.augment, {"n": 0}

    def interrupt_in_second_epoch(x, rotation, flip):
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt
        return real(x, rotation, flip)

    monkeypatch.setattr(engine, "augment", interrupt_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        model.set_params(epochs=5).fit(X)
    assert model.interrupted_ and model.best_epoch_ == 1
    for name in ("mixture_", "labels_", "embedding_", "manifold_"):
        assert not hasattr(model, name), name
