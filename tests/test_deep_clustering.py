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


# ------------------------------------------------------------------ model files
@pytest.fixture(scope="module")
def saved_umap(fitted_umap, tmp_path_factory):
    path = tmp_path_factory.mktemp("deep") / "model.npz"
    fitted_umap.save(path)
    return path


def test_save_load_predicts_the_same_labels(fitted_umap, saved_umap, digits):
    X, _, X_test = digits
    model = fitted_umap
    loaded = DeepClustering.load(saved_umap)
    labels = model.predict(X_test)
    # Same labels on held-out images, whatever the threads of the loaded model (n_threads is
    # not saved: the encoder's last bits may differ, the transform does not amplify them).
    np.testing.assert_array_equal(loaded.predict(X_test), labels)
    loaded.n_threads = model.n_threads  # the same arithmetic: the same places, bit for bit
    np.testing.assert_array_equal(loaded.transform(X_test), model.transform(X_test))
    np.testing.assert_array_equal(loaded.encode(X_test), model.encode(X_test))
    # The fit's results come back: labels, embedding, mixture, UMAP's arrays, history, timings.
    np.testing.assert_array_equal(loaded.labels_, model.labels_)
    np.testing.assert_array_equal(loaded.embedding_, model.embedding_)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(loaded.mixture_, name), getattr(model.mixture_, name))
    np.testing.assert_array_equal(loaded.manifold_.training_codes, model.manifold_.training_codes)
    assert loaded.manifold_.params() == model.manifold_.params()
    assert loaded.get_params() == model.get_params()  # n_threads was set above: not saved
    assert loaded.history_ == model.history_ and loaded.best_epoch_ == model.best_epoch_
    assert loaded.timings_ == model.timings_  # JSON keeps a float exactly
    assert loaded.image_shape_ == (28, 28)
    # A training image is placed where the fit put it: it predicts its own label.
    np.testing.assert_array_equal(loaded.predict(X), model.labels_)
    np.testing.assert_array_equal(model.predict(X), model.labels_)


def test_loaded_model_predicts_without_umap(fitted_umap, saved_umap, digits, monkeypatch):
    """The manifold step is numpy and scipy once fitted: no umap, pynndescent or numba."""
    import builtins

    real_import = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name.split(".")[0] in ("umap", "pynndescent", "numba"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)
    loaded = DeepClustering.load(saved_umap)
    np.testing.assert_array_equal(loaded.predict(digits[2]), fitted_umap.predict(digits[2]))


def test_predict_does_not_depend_on_the_batch(fitted_umap, digits):
    """umap's own transform moved labels with the batch; each point is placed on its own here
    (bit for bit from the codes; the encoder's last bits may move with the batch, not a label)."""
    X_test = digits[2]
    codes = fitted_umap.encode(X_test)
    whole = fitted_umap.manifold_.transform(codes)
    parts = [fitted_umap.manifold_.transform(codes[i : i + 25]) for i in range(0, 60, 25)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    labels = np.concatenate([fitted_umap.predict(X_test[i : i + 30]) for i in range(0, 60, 30)])
    np.testing.assert_array_equal(labels, fitted_umap.mixture_.predict(whole))
    assert fitted_umap.manifold_.transform(codes[:0]).shape == (0, 10)


def test_model_file_holds_plain_arrays_only(saved_umap):
    import json

    with np.load(saved_umap, allow_pickle=False) as archive:  # no member needs pickle
        members = {name: archive[name] for name in archive.files}
    meta = json.loads(str(members.pop("__meta__")))
    assert meta["kind"] == "DeepClustering" and meta["params"]["manifold"]["n_neighbors"] == 20
    assert all(value.dtype.kind in "fiu" for value in members.values())
    assert members["manifold.training_codes"].shape == (400, 5)
    assert members["embedding_"].dtype == np.float32  # UMAP's float32, stored exactly


def test_save_load_without_manifold(digits, tmp_path):
    X, _, X_test = digits
    model = DeepClustering(3, epochs=1, manifold=None, random_state=0, **SMALL).fit(X[:120])
    model.save(tmp_path / "plain.npz")
    loaded = DeepClustering.load(tmp_path / "plain.npz")
    assert loaded.manifold_ is None
    np.testing.assert_array_equal(loaded.predict(X_test), model.predict(X_test))
    np.testing.assert_array_equal(loaded.labels_, model.labels_)


def test_save_needs_a_fitted_model_and_is_atomic(fitted_umap, saved_umap, tmp_path, monkeypatch):
    import gmmfast.utils._model_files as files
    from gmmfast import NotFittedError

    with pytest.raises(NotFittedError):
        DeepClustering().save(tmp_path / "none.npz")
    path = tmp_path / "model.npz"
    path.write_bytes(saved_umap.read_bytes())

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fitted_umap.save(path)
    assert path.read_bytes() == saved_umap.read_bytes()  # the old file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left


def _rewrite(source, target, change):
    """Copy a model file, letting ``change(members, meta)`` edit its arrays and JSON header."""
    import json

    with np.load(source, allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}
    meta = json.loads(str(members.pop("__meta__")))
    change(members, meta)
    np.savez(target, __meta__=np.array(json.dumps(meta)), **members)
    return target


def _nan_embedding(m, meta):
    m["embedding_"] = m["embedding_"].copy()
    m["embedding_"][3, 1] = np.nan


def _nan_weight(m, meta):
    m["autoencoder.encoder.0.weight"] = m["autoencoder.encoder.0.weight"].copy()
    m["autoencoder.encoder.0.weight"][0, 0] = np.inf


def _set(path, value):
    def change(m, meta):
        node = meta["params"]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda m, meta: m.update(embedding_=m["embedding_"][:, :9]), r"'embedding_' has shape"),
        (_nan_embedding, r"'embedding_' contains NaN"),
        (
            lambda m, meta: m.update(embedding_=m["embedding_"].astype(np.int64)),
            "'embedding_' has dtype",
        ),
        (_nan_weight, r"'autoencoder.encoder.0.weight' contains NaN"),
        (lambda m, meta: m.pop("autoencoder.decoder.4.bias"), r"missing \['decoder.4.bias'\]"),
        (
            lambda m, meta: m.update({"autoencoder.extra": np.zeros(3, np.float32)}),
            "unknown member 'autoencoder.extra'",
        ),
        (
            lambda m, meta: m.update(
                {"manifold.training_codes": m["manifold.training_codes"][:-1]}
            ),
            r"'manifold.training_codes' has shape",
        ),
        (
            lambda m, meta: m.pop("manifold.training_codes"),
            r"missing array 'manifold.training_codes'",
        ),
        (
            lambda m, meta: m.update(labels_=m["labels_"] + 10),
            r"'labels_' holds labels outside 0..9",
        ),
        (
            lambda m, meta: m.update({"mixture.covariances_": -m["mixture.covariances_"]}),
            r"\(mixture\)",
        ),
        (
            lambda m, meta: m.update({"mixture.means_": m["mixture.means_"][:5]}),
            r"'mixture.means_' has shape \(5, 10\), expected \(10, 10\)",
        ),
        (_set(["config", "hidden_sizes"], [10**6]), "hidden_sizes"),
        (_set(["config", "embedding_size"], 6), r"'autoencoder.encoder.4.weight' has shape"),
        (_set(["config", "colour"], 1), "bad configuration: Invalid parameter 'colour'"),
        (_set(["image_shape"], [28]), "'image_shape'"),
        (_set(["n_samples"], 401), r"'embedding_' has shape \(400, 10\), expected \(401, 10\)"),
        (
            _set(["manifold", "n_neighbors"], 10**6),
            r"manifold.n_neighbors must be an integer in 1..400",
        ),
        (_set(["manifold", "b"], -1.0), r"'manifold.b'"),
        (_set(["manifold", "n_epochs"], 10**9), "manifold.n_epochs"),
        (_set(["manifold"], None), "disagrees with manifold='umap'"),
        (_set(["mixture_fitted"], []), "'mixture_fitted'"),
        (_set(["timings", "total"], "long"), "'timings.total'"),
    ],
)
def test_tampered_file_is_refused_naming_the_field(saved_umap, tmp_path, change, message):
    path = _rewrite(saved_umap, tmp_path / "bad.npz", change)
    with pytest.raises(ValueError, match=message) as info:
        DeepClustering.load(path)
    assert str(path) in str(info.value)


def test_pickled_truncated_or_foreign_file_is_refused(saved_umap, tmp_path):
    with np.load(saved_umap, allow_pickle=False) as archive:
        members = {name: archive[name] for name in archive.files}
    pickled = tmp_path / "pickled.npz"
    members["labels_"] = np.array([{"x": 1}] * 400, dtype=object)  # a member that needs pickle
    np.savez(pickled, **members)
    with pytest.raises(ValueError, match=r"'labels_' holds an object array \(pickled data\)"):
        DeepClustering.load(pickled)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(saved_umap.read_bytes()[: saved_umap.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.npz"):
        DeepClustering.load(truncated)
    mixture = tmp_path / "mixture.npz"
    GaussianMixture(2, random_state=0).fit(np.random.default_rng(0).normal(size=(50, 2))).save(
        mixture
    )
    with pytest.raises(
        ValueError, match="holds a 'GaussianMixture' model, expected 'DeepClustering'"
    ):
        DeepClustering.load(mixture)
    with pytest.raises(FileNotFoundError):
        DeepClustering.load(tmp_path / "missing.npz")
