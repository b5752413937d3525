"""gmmfast.vae: the convolutional VAE, VaDE, model files, cluster scores.

Small networks and a few hundred images of the shipped MNIST sample keep
this file to seconds; one test trains the default (reference) architecture
for one epoch.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gmmfast.vae._conv_vae as conv_vae_module  # noqa: E402
import gmmfast.vae._engine as engine  # noqa: E402
import gmmfast.vae._model_files as model_files  # noqa: E402
from gmmfast import GaussianMixture, GMMClassifier  # noqa: E402
from gmmfast.vae import ConvVAE, VaDE, classification_scores, cluster_mapping, clustering_scores  # noqa: E402

TINY = dict(channels=(4, 8, 8, 8, 8), hidden_units=32, batch_size=64, n_threads=1)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def digits(mnist_sample):
    """300 training and 100 test images of the sample, (n, 784) float32 in [0, 1]."""
    X, y, X_test, y_test = mnist_sample
    return X[:300], y[:300], X_test[:100], y_test[:100]


@pytest.fixture(scope="module")
def tiny_vae(digits):
    X = digits[0]
    return ConvVAE(latent_dim=2, epochs=3, random_state=0, **TINY).fit(X)


# ------------------------------------------------------------ architecture
def test_default_architecture_is_the_reference_one():
    vae = ConvVAE()
    assert (vae.latent_dim, vae.beta, vae.dropout, vae.learning_rate) == (2, 0.5, 0.2, 1e-3)
    assert (vae.lr_factor, vae.lr_patience, vae.patience, vae.validation_fraction) == (
        0.5,
        5,
        15,
        0.2,
    )
    net = vae._build((28, 28))
    convs = [m for m in net.encoder.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 128, 256]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1]
    assert all(c.kernel_size == (3, 3) for c in convs)
    dense = [m for m in net.encoder.dense if isinstance(m, torch.nn.Linear)]
    assert [d.out_features for d in dense] == [512]
    assert net.encoder.mu.out_features == net.encoder.log_sigma.out_features == 2
    assert [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)] == [0.2, 0.2]
    deconvs = [m for m in net.decoder.features if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [d.out_channels for d in deconvs] == [128, 128, 64, 32, 1]
    assert [d.stride[0] for d in deconvs] == [1, 2, 1, 2, 1]
    with torch.no_grad():
        logits, mu, log_sigma, z = net.eval()(torch.rand(3, 1, 28, 28))
    assert logits.shape == (3, 1, 28, 28) and mu.shape == log_sigma.shape == z.shape == (3, 2)


def test_default_strides_follow_the_number_of_convolutions():
    """Three convolutions alternate 1, 2, 1 by default; explicit strides still checked."""
    net = ConvVAE(channels=(4, 8, 8), hidden_units=16)._build((28, 28))
    assert [c.stride[0] for c in net.encoder.features if isinstance(c, torch.nn.Conv2d)] == [
        1,
        2,
        1,
    ]
    ConvVAE(channels=(4, 8, 8))._check_params()
    with pytest.raises(ValueError, match="strides must give 1 or 2 for each of the 3 convolutions"):
        ConvVAE(channels=(4, 8, 8), strides=(1, 2))._check_params()


def test_one_epoch_of_the_default_architecture_feeds_the_gmms(digits):
    X, y, X_test, y_test = digits
    vae = ConvVAE(latent_dim=2, epochs=1, random_state=0, n_threads=1).fit(X)
    assert vae.n_epochs_ == 1 and vae.best_epoch_ == 1 and not vae.interrupted_
    assert (vae.n_train_, vae.n_val_) == (240, 60)
    assert np.isfinite(vae.history_["train_loss"]).all() and vae.seconds_per_epoch_ > 0
    Z = vae.encode(X)
    assert (
        Z.shape == (300, 2)
        and Z.dtype == np.float64
        and Z.flags.c_contiguous
        and np.isfinite(Z).all()
    )
    GaussianMixture(3, random_state=0).fit(Z)
    clf = GMMClassifier(1, random_state=0).fit(Z, y)
    assert clf.predict(vae.encode(X_test)).shape == (100,)


# ------------------------------------------------------------ fit, shapes
def test_shapes_and_ranges(tiny_vae, digits):
    X, _, X_test, _ = digits
    images = X_test[:7].reshape(7, 28, 28)
    Z, log_sigma = tiny_vae.encode(images, return_log_sigma=True)
    assert Z.shape == log_sigma.shape == (7, 2)
    assert np.array_equal(Z, tiny_vae.encode(X_test[:7]))  # flat or (n, 28, 28) alike
    decoded = tiny_vae.decode(Z)
    assert decoded.shape == (7, 28, 28) and decoded.dtype == np.float32
    assert decoded.min() >= 0 and decoded.max() <= 1
    assert tiny_vae.reconstruct(X_test[:7]).shape == (7, 784)
    assert tiny_vae.reconstruct(images).shape == (7, 28, 28)
    assert np.array_equal(tiny_vae.reconstruct(images), decoded)
    assert tiny_vae.sample(5, random_state=0).shape == (5, 28, 28)
    assert np.array_equal(tiny_vae.sample(5, random_state=1), tiny_vae.sample(5, random_state=1))


def test_loss_decreases_on_tiny_data(tiny_vae):
    train = tiny_vae.history_["train_loss"]
    val = tiny_vae.history_["val_loss"]
    assert len(train) == len(val) == 3
    assert train[-1] < train[0] and val[-1] < val[0]
    assert tiny_vae.best_val_loss_ == min(val)


def test_seeded_training_is_repeatable_and_inputs_untouched(digits):
    X = digits[0][:120].copy()
    before = X.copy()
    a = ConvVAE(epochs=2, random_state=3, rotation=10, flip=True, input_noise=0.1, **TINY).fit(X)
    b = ConvVAE(epochs=2, random_state=3, rotation=10, flip=True, input_noise=0.1, **TINY).fit(X)
    c = ConvVAE(epochs=2, random_state=4, rotation=10, flip=True, input_noise=0.1, **TINY).fit(X)
    assert np.array_equal(X, before)
    assert a.history_["train_loss"] == b.history_["train_loss"]
    assert np.array_equal(a.encode(X), b.encode(X))
    assert not np.array_equal(a.encode(X), c.encode(X))


def test_fit_leaves_torch_rng_and_threads_alone(digits):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    ConvVAE(epochs=1, random_state=0, **(TINY | {"n_threads": 2})).fit(digits[0][:40])
    assert torch.equal(torch.rand(3), expected)
    assert torch.get_num_threads() == threads


def test_sampling_from_gmm_components(tiny_vae, digits):
    X, y = digits[:2]
    Z = tiny_vae.encode(X)
    gm = GaussianMixture(3, covariance_type="full", random_state=0).fit(Z)
    rng = np.random.RandomState(0)
    draws = conv_vae_module._draw_latents(rng, 4000, 2, gm, 1)
    assert np.allclose(
        draws.mean(0), gm.means_[1], atol=0.1 * np.sqrt(gm.covariances_[1].diagonal()).max() + 1e-3
    )
    assert np.allclose(np.cov(draws.T), gm.covariances_[1], rtol=0.15, atol=1e-4)
    assert tiny_vae.sample(3, gmm=gm, component=2, random_state=0).shape == (3, 28, 28)
    assert tiny_vae.sample(3, gmm=gm, random_state=0).shape == (3, 28, 28)
    clf = GMMClassifier(1, random_state=0).fit(Z, y)
    per_class = conv_vae_module._draw_latents(np.random.RandomState(0), 3000, 2, clf, 7)
    seven = list(clf.classes_).index(7)
    assert np.allclose(per_class.mean(0), clf.estimators_[seven].means_[0], atol=0.2)
    with pytest.raises(ValueError, match="not one of the classifier's classes"):
        tiny_vae.sample(2, gmm=clf, component=42)
    with pytest.raises(ValueError, match="component must be an index"):
        tiny_vae.sample(2, gmm=gm, component=3)
    with pytest.raises(ValueError, match="component needs gmm"):
        tiny_vae.sample(2, component=0)


# -------------------------------------------------------- training control
def test_early_stopping_and_learning_rate_schedule(digits, monkeypatch):
    losses = iter([10.0, 11.0, 12.0, 13.0, 14.0, 15.0])
    monkeypatch.setattr(ConvVAE, "_evaluate", lambda self, *a: next(losses))
    vae = ConvVAE(epochs=20, patience=2, lr_patience=0, random_state=0, **TINY).fit(digits[0][:40])
    assert vae.n_epochs_ == 3 and vae.best_epoch_ == 1 and vae.best_val_loss_ == 10.0
    assert vae.history_["learning_rate"] == [1e-3, 5e-4, 2.5e-4]


def test_keyboard_interrupt_keeps_best_model(digits, monkeypatch, capsys):
    X = digits[0][:40]
    reference = ConvVAE(epochs=1, random_state=0, **TINY).fit(X)
    calls = {"n": 0}
    real = engine.augment

    def interrupt_in_second_epoch(x, rotation, flip):
        calls["n"] += 1
        if calls["n"] > 1:  # 32 training images: one batch per epoch
            raise KeyboardInterrupt
        return real(x, rotation, flip)

    monkeypatch.setattr(engine, "augment", interrupt_in_second_epoch)
    vae = ConvVAE(epochs=5, random_state=0, **TINY).fit(X)
    assert vae.interrupted_ and vae.n_epochs_ == 1 and vae.best_epoch_ == 1
    assert "interrupted during epoch 2" in capsys.readouterr().err
    assert np.array_equal(vae.encode(X), reference.encode(X))  # the epoch-1 weights


def test_verbose_shows_an_epoch_bar_and_quiet_shows_nothing(digits, capsys):
    X = digits[0][:80]
    ConvVAE(epochs=1, random_state=0, verbose=1, **TINY).fit(X)
    out, err = capsys.readouterr()
    assert "VAE epoch 1/1" in err and "batch" in err
    ConvVAE(epochs=1, random_state=0, verbose=0, **TINY).fit(X)
    assert capsys.readouterr() == ("", "")


# ------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "make, message",
    [
        (lambda X: np.where(np.arange(784) == 5, np.nan, X), "NaN or infinity"),
        (lambda X: np.where(np.arange(784) == 5, np.inf, X), "NaN or infinity"),
        (lambda X: X * 255, r"in \[0, 1\]"),
        (lambda X: X - 0.5, r"in \[0, 1\]"),
        (lambda X: X[:, :783], "not a square image"),
        (lambda X: X[:5], "at least 10"),
        (lambda X: X.reshape(-1, 2, 28, 28), "shape"),
        (lambda X: X.astype(str), "numeric"),
        (lambda X: X.reshape(-1, 28, 28)[:, :27, :27], "strides"),
    ],
)
def test_bad_images_raise_clear_errors(digits, make, message):
    X = digits[0][:40]
    with pytest.raises(ValueError, match=message):
        ConvVAE(epochs=1, **TINY).fit(make(X))


def test_bad_input_to_a_fitted_model(tiny_vae, digits):
    X = digits[0]
    with pytest.raises(ValueError, match="fitted on 28 x 28"):
        tiny_vae.encode(np.zeros((2, 20, 20)))
    with pytest.raises(ValueError, match="features"):
        tiny_vae.decode(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        tiny_vae.decode(np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        tiny_vae.encode(X[:2] + 1)
    with pytest.raises(ValueError, match="not fitted|fit"):
        ConvVAE().encode(X[:2])


@pytest.mark.parametrize(
    "params, message",
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"strides": (1, 2, 3, 2, 1)}, "strides"),
        ({"channels": ()}, "channels"),
        ({"dropout": 1.0}, "dropout"),
        ({"validation_fraction": 1.0}, "validation_fraction"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"device": "tpu"}, "device"),
    ],
)
def test_bad_parameters(digits, params, message):
    with pytest.raises(ValueError, match=message):
        ConvVAE(**(TINY | params)).fit(digits[0][:40])


# ------------------------------------------------------------ model files
def test_save_load_round_trip(tiny_vae, digits, tmp_path):
    path = tmp_path / "vae.pt"
    tiny_vae.save(path)
    loaded = ConvVAE.load(path, device="cpu")
    assert loaded.get_params() == tiny_vae.get_params() | {"device": "cpu", "n_threads": None}
    for (name, a), (_, b) in zip(
        tiny_vae.network_.state_dict().items(), loaded.network_.state_dict().items()
    ):
        assert torch.equal(a, b), name
    X = digits[2]
    assert np.array_equal(loaded.encode(X), tiny_vae.encode(X))
    assert np.array_equal(loaded.reconstruct(X), tiny_vae.reconstruct(X))
    assert loaded.history_ == tiny_vae.history_ and loaded.best_epoch_ == tiny_vae.best_epoch_
    payload = torch.load(path, weights_only=True)  # plain data: the safe loader reads it
    assert payload["format_version"] == model_files.FORMAT_VERSION and payload["kind"] == "ConvVAE"


def _rewrite(src, dst, change):
    payload = torch.load(src, weights_only=True)
    change(payload)
    torch.save(payload, dst)
    return dst


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p.update(format_version=model_files.FORMAT_VERSION + 1), "format version"),
        (lambda p: p.update(format="other"), "not a gmmfast VAE model"),
        (lambda p: p.update(kind="VaDE"), "expected 'ConvVAE'"),
        (lambda p: p["config"].update(latent_dim=3), "do not match"),
        (lambda p: p["config"].update(latent_dim=-1), "latent_dim"),
        (lambda p: p["config"].update(bogus=1), "Invalid parameter"),
        (lambda p: p["state_dict"].pop("encoder.mu.bias"), "do not match"),
        (lambda p: p["state_dict"]["encoder.mu.bias"].fill_(float("nan")), "NaN"),
        (lambda p: p.update(image_shape=[28]), "image_shape"),
        (lambda p: p.update(fitted=[1, 2]), "malformed 'fitted'"),
    ],
)
def test_load_rejects_bad_files(tiny_vae, tmp_path, change, message):
    tiny_vae.save(tmp_path / "ok.pt")
    bad = _rewrite(tmp_path / "ok.pt", tmp_path / "bad.pt", change)
    with pytest.raises(ValueError, match=message):
        ConvVAE.load(bad)


def test_load_never_unpickles_objects(tmp_path):
    (tmp_path / "garbage.pt").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a gmmfast VAE model file"):
        ConvVAE.load(tmp_path / "garbage.pt")
    torch.save({"format": "gmmfast-torch", "evil": Exception("x")}, tmp_path / "object.pt")
    with pytest.raises(ValueError, match="not a gmmfast VAE model file"):
        ConvVAE.load(tmp_path / "object.pt")
    np.savez(tmp_path / "model.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a gmmfast VAE model file"):
        ConvVAE.load(tmp_path / "model.npz")
    with pytest.raises(FileNotFoundError):
        ConvVAE.load(tmp_path / "missing.pt")


# ------------------------------------------------------------------- VaDE
@pytest.fixture(scope="module")
def vade(tiny_vae, digits):
    return VaDE(tiny_vae, n_clusters=3, epochs=2, random_state=0, n_threads=1, batch_size=64).fit(
        digits[0]
    )


def test_vade_fits_and_predicts(vade, tiny_vae, digits):
    X_test = digits[2]
    assert vade.weights_.shape == (3,) and np.isclose(vade.weights_.sum(), 1.0)
    assert vade.means_.shape == vade.variances_.shape == (3, 2) and (vade.variances_ > 0).all()
    assert vade.init_mixture_.covariance_type == "diag" and vade.init_mixture_.n_components == 3
    proba = vade.predict_proba(X_test)
    assert proba.shape == (100, 3) and np.allclose(proba.sum(1), 1.0)
    assert np.array_equal(vade.predict(X_test), proba.argmax(1))
    # the prior is a gmmfast mixture: q(c | x) from the kernels at the latent mean
    assert np.allclose(proba, vade.mixture_.predict_proba(vade.encode(X_test)))
    assert vade.n_epochs_ == 2 and len(vade.history_["val_loss"]) == 2
    assert vade.sample(4, component=1, random_state=0).shape == (4, 28, 28)
    assert vade.vae_ is not tiny_vae


def test_vade_starts_from_a_diag_gmm_on_the_pretrained_latents(tiny_vae, digits):
    X = digits[0]
    state = {k: v.clone() for k, v in tiny_vae.network_.state_dict().items()}
    start = VaDE(tiny_vae, n_clusters=3, epochs=0, random_state=0, n_threads=1).fit(X)
    # the input VAE is copied, never trained in place
    assert all(torch.equal(v, tiny_vae.network_.state_dict()[k]) for k, v in state.items())
    assert np.array_equal(start.encode(X), tiny_vae.encode(X))
    init = start.init_mixture_
    assert np.allclose(start.weights_, init.weights_, atol=1e-6)
    assert np.allclose(start.means_, init.means_, atol=1e-5)
    Z, log_sigma = tiny_vae.encode(
        start._split(engine.check_images(X), None, engine._seed(0))[0], return_log_sigma=True
    )
    resp = init.predict_proba(Z)
    spread = (
        resp.T @ np.exp(2 * log_sigma) / resp.sum(0)[:, None]
    )  # mean posterior variance per component
    assert np.allclose(start.variances_, init.covariances_ + spread, rtol=1e-5)
    seed = engine._seed(0)
    X_train, _ = start._split(engine.check_images(X), None, seed)
    expected = GaussianMixture(
        3, covariance_type="diag", n_init=5, reg_covar=1e-4, random_state=seed, max_iter=300
    ).fit(tiny_vae.encode(X_train))
    assert np.allclose(init.means_, expected.means_)


def test_vade_save_load_round_trip(vade, digits, tmp_path):
    vade.save(tmp_path / "vade.pt")
    loaded = VaDE.load(tmp_path / "vade.pt")
    X_test = digits[2]
    assert np.array_equal(loaded.predict_proba(X_test), vade.predict_proba(X_test))
    assert np.array_equal(loaded.weights_, vade.weights_)
    assert np.array_equal(loaded.init_mixture_.means_, vade.init_mixture_.means_)
    assert loaded.history_ == vade.history_
    with pytest.raises(ValueError, match="expected 'ConvVAE'"):
        ConvVAE.load(tmp_path / "vade.pt")
    assert (loaded.best_epoch_, loaded.n_epochs_) == (vade.best_epoch_, vade.n_epochs_)
    for key in ("fitted", "vae_fitted"):
        bad = _rewrite(tmp_path / "vade.pt", tmp_path / "bad.pt", lambda p: p.update({key: "x"}))
        with pytest.raises(ValueError, match="malformed 'fitted'"):
            VaDE.load(bad)


def test_vade_pretrains_on_its_own_training_split(digits, monkeypatch):
    """An unfitted VAE is pretrained on VaDE's training images only, with
    VaDE's validation images: no image that picks the best epoch is trained on."""
    X = digits[0][:120]
    seen = {}
    real_fit = ConvVAE.fit

    def recording_fit(self, images, *args, validation_images=None, **kwargs):
        seen["train"], seen["val"] = np.array(images), np.array(validation_images)
        return real_fit(self, images, *args, validation_images=validation_images, **kwargs)

    monkeypatch.setattr(ConvVAE, "fit", recording_fit)
    model = VaDE(
        ConvVAE(latent_dim=2, epochs=1, random_state=5, **TINY),
        n_clusters=3,
        epochs=1,
        random_state=0,
        n_threads=1,
    ).fit(X)
    X_train, X_val = model._split(engine.check_images(X), None, engine._seed(0))
    assert np.array_equal(seen["train"], X_train) and np.array_equal(seen["val"], X_val)
    assert model.n_train_ == len(X_train) and model.n_val_ == len(X_val) == 24


def test_vade_needs_a_vae(digits):
    with pytest.raises(ValueError, match="VaDE needs vae"):
        VaDE(n_clusters=3).fit(digits[0])


# ------------------------------------------------------ clusters, scores
def test_hungarian_mapping_on_a_constructed_example():
    y = np.array([0] * 10 + [1] * 10 + [2] * 10)
    clusters = np.array([2] * 10 + [0] * 10 + [1] * 10)  # a permutation of the labels
    clusters[[0, 1, 15]] = [0, 1, 1]  # three mistakes
    assert cluster_mapping(y, clusters) == {2: 0, 0: 1, 1: 2}
    scores = clustering_scores(y, clusters)
    assert scores["accuracy"] == pytest.approx(27 / 30)
    assert clustering_scores(y, (y + 1) % 3) == pytest.approx(
        {"accuracy": 1.0, "nmi": 1.0, "ari": 1.0}
    )
    # greedy (each cluster to its majority label) would map both 5 and 6 to label 0;
    # the assignment is one-to-one
    y2 = np.array([0, 0, 0, 0, 1, 1, 0, 0, 0, 1])
    c2 = np.array([5, 5, 5, 5, 5, 5, 6, 6, 6, 6])
    assert cluster_mapping(y2, c2) == {5: 0, 6: 1}
    assert clustering_scores(y2, c2)["accuracy"] == pytest.approx(5 / 10)
    # more clusters than labels: the extra one goes to its majority label
    assert cluster_mapping([0, 0, 1, 1, 1], [0, 0, 1, 1, 2]) == {0: 0, 1: 1, 2: 1}


def test_scores_agree_with_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.RandomState(0)
    y = rng.randint(0, 5, 400)
    pred = np.where(rng.rand(400) < 0.7, y, rng.randint(0, 6, 400))
    s = clustering_scores(y, pred)
    assert s["nmi"] == pytest.approx(metrics.normalized_mutual_info_score(y, pred))
    assert s["ari"] == pytest.approx(metrics.adjusted_rand_score(y, pred))
    c = classification_scores(y, pred)
    p, r, f, _ = metrics.precision_recall_fscore_support(y, pred, average="macro", zero_division=0)
    assert (c["precision"], c["recall"], c["f1"]) == pytest.approx((p, r, f))
    assert c["accuracy"] == pytest.approx(metrics.accuracy_score(y, pred))
    with pytest.raises(ValueError, match="400 labels but"):
        clustering_scores(y, pred[:-1])


# ------------------------------------------------------- dense architecture
DENSE = dict(architecture="dense", dense_sizes=(32, 16), batch_size=64, n_threads=1)


@pytest.fixture(scope="module")
def dense_vae(digits):
    return ConvVAE(latent_dim=2, epochs=1, random_state=0, **DENSE).fit(digits[0])


def test_dense_architecture_is_the_dec_vade_mlp():
    net = ConvVAE(latent_dim=10, architecture="dense")._build((28, 28))
    linears = [m for m in net.encoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (784, 500),
        (500, 500),
        (500, 2000),
        (2000, 10),
        (2000, 10),
    ]
    linears = [m for m in net.decoder.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (10, 2000),
        (2000, 500),
        (500, 500),
        (500, 784),
    ]
    assert not any(isinstance(m, torch.nn.Dropout) for m in net.modules())
    assert ConvVAE().architecture == "conv"


def test_dense_fit_encode_decode(dense_vae, digits):
    X, X_test = digits[0], digits[2]
    assert dense_vae.n_epochs_ == 1 and np.isfinite(dense_vae.best_val_loss_)
    Z, log_sigma = dense_vae.encode(X_test, return_log_sigma=True)
    assert Z.shape == log_sigma.shape == (100, 2) and Z.dtype == np.float64
    images = dense_vae.decode(Z)
    assert images.shape == (100, 28, 28) and images.min() >= 0 and images.max() <= 1
    assert dense_vae.reconstruct(X_test).shape == X_test.shape
    assert dense_vae.sample(4, random_state=0).shape == (4, 28, 28)
    again = ConvVAE(latent_dim=2, epochs=1, random_state=0, **DENSE).fit(X)
    assert np.array_equal(again.encode(X_test), Z)  # seeded: repeatable


def test_dense_save_load_round_trip(dense_vae, digits, tmp_path):
    path = tmp_path / "dense.pt"
    dense_vae.save(path)
    loaded = ConvVAE.load(path, device="cpu")
    assert loaded.architecture == "dense" and loaded.dense_sizes == (32, 16)
    assert loaded.get_params() == dense_vae.get_params() | {"device": "cpu", "n_threads": None}
    X = digits[2]
    assert np.array_equal(loaded.encode(X), dense_vae.encode(X))
    assert np.array_equal(loaded.decode(loaded.encode(X)), dense_vae.decode(dense_vae.encode(X)))


def test_files_without_architecture_load_as_conv(tiny_vae, digits, tmp_path):
    tiny_vae.save(tmp_path / "ok.pt")

    def drop(p):
        p["config"].pop("architecture")
        p["config"].pop("dense_sizes")

    old = ConvVAE.load(_rewrite(tmp_path / "ok.pt", tmp_path / "old.pt", drop))
    assert old.architecture == "conv"
    assert np.array_equal(old.encode(digits[2]), tiny_vae.encode(digits[2]))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda p: p["config"].update(architecture="mlp"), "architecture"),
        (lambda p: p["config"].update(architecture=["dense"]), "architecture"),
        (lambda p: p["config"].update(dense_sizes=[32, 17]), "do not match"),
        (lambda p: p["config"].update(dense_sizes=[10**9]), "dense_sizes"),
        (lambda p: p["config"].update(dense_sizes=[8] * 17), "dense_sizes"),
        (lambda p: p["config"].update(dense_sizes="32"), "dense_sizes"),
        (lambda p: p["config"].update(architecture="conv"), "do not match"),
    ],
)
def test_load_rejects_bad_dense_files(dense_vae, tmp_path, change, message):
    dense_vae.save(tmp_path / "ok.pt")
    bad = _rewrite(tmp_path / "ok.pt", tmp_path / "bad.pt", change)
    with pytest.raises(ValueError, match=message):
        ConvVAE.load(bad)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"architecture": "mlp"}, "architecture"),
        ({"architecture": None}, "architecture"),
        ({"dense_sizes": ()}, "dense_sizes"),
        ({"dense_sizes": (32, 0)}, "dense_sizes"),
        ({"dense_sizes": (32, 1.5)}, "dense_sizes"),
        ({"dense_sizes": 32}, "dense_sizes"),
    ],
)
def test_bad_dense_parameters(digits, params, message):
    with pytest.raises(ValueError, match=message):
        ConvVAE(**(DENSE | params)).fit(digits[0][:40])


def test_vade_from_a_dense_vae(dense_vae, digits, tmp_path):
    X, X_test = digits[0], digits[2]
    model = VaDE(dense_vae, n_clusters=3, epochs=1, random_state=0, n_threads=1, batch_size=64)
    model.fit(X)
    assert model.vae_.architecture == "dense" and model.n_epochs_ == 1
    assert dense_vae.n_epochs_ == 1  # the given VAE is copied, not trained further
    proba = model.predict_proba(X_test)
    assert proba.shape == (100, 3) and np.allclose(proba.sum(1), 1)
    model.save(tmp_path / "vade.pt")
    loaded = VaDE.load(tmp_path / "vade.pt")
    assert loaded.vae_.architecture == "dense"
    assert np.array_equal(loaded.predict(X_test), model.predict(X_test))
    unfitted = VaDE(ConvVAE(2, epochs=1, random_state=0, **DENSE), n_clusters=3, epochs=1)
    assert unfitted.set_params(random_state=0, n_threads=1).fit(X).vae_.architecture == "dense"


# ------------------------------------------- hostile parameters, round two
from gmmfast.vae import DeepClustering  # noqa: E402

DC = dict(hidden_sizes=(16,), embedding_size=3, manifold=None, batch_size=64, n_threads=1)


def _dense_vade(**params):
    return VaDE(ConvVAE(**DENSE), n_clusters=3, epochs=1, n_threads=1, batch_size=64, **params)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: ConvVAE(latent_dim=10**8, **DENSE), r"latent_dim must be <= 4096"),
        (lambda: ConvVAE(latent_dim=10**8), r"latent_dim must be <= 4096"),
        (lambda: ConvVAE(hidden_units=10**8), r"hidden_units must be <= 65536"),
        (lambda: ConvVAE(channels=(8, 10**8)), r"channels values must be integers in 1\.\.4096"),
        (lambda: ConvVAE(channels=(4,) * 17), r"channels must hold 1 to 16"),
        (
            lambda: ConvVAE(**DENSE | {"dense_sizes": (10**8,)}),
            "dense_sizes values must be integers",
        ),
        # Each size within its bound, the network over the parameter budget.
        (
            lambda: ConvVAE(hidden_units=60_000),
            r"hidden_units=60000.*over the limit of 100,000,000",
        ),
        (
            lambda: ConvVAE(channels=(4096, 4096, 4096)),
            r"channels=\(4096, 4096, 4096\).*parameters",
        ),
        (lambda: ConvVAE(**DENSE | {"dense_sizes": (65536, 65536)}), r"dense_sizes=.*parameters"),
        # Within the parameter budget, over the activation budget for one batch.
        (
            lambda: ConvVAE(channels=(4096,), strides=(1,), hidden_units=1, batch_size=4096),
            r"activations.*lower batch_size",
        ),
        (lambda: DeepClustering(hidden_sizes=(10**8,)), r"hidden_sizes values must be integers"),
        (lambda: DeepClustering(hidden_sizes=(65536, 65536)), r"hidden_sizes=.*parameters"),
        (lambda: DeepClustering(hidden_sizes=(8,) * 17), r"hidden_sizes must hold 0 to 16"),
        (lambda: DeepClustering(embedding_size=10**8), r"embedding_size must be <= 4096"),
        (lambda: DeepClustering(manifold_size=10**8), r"manifold_size must be <= 4096"),
        (lambda: DeepClustering(n_clusters=10**8), r"n_clusters must be <= 10000"),
        (
            lambda: VaDE(ConvVAE(latent_dim=10**8, **DENSE), n_clusters=3),
            r"latent_dim must be <= 4096",
        ),
        (lambda: VaDE(ConvVAE(**DENSE), n_clusters=10**8), r"n_clusters must be <= 10000"),
        (
            lambda: VaDE(ConvVAE(latent_dim=4096, **DENSE), n_clusters=200, batch_size=128),
            r"n_clusters=200 with latent_dim=4096.*prior's KL",
        ),
    ],
)
def test_network_sizes_are_bounded_before_anything_is_allocated(digits, monkeypatch, make, message):
    """Every size parameter of every estimator: a ValueError naming it and its bound, raised
    before a single real (non-meta) layer is made."""
    real_linear = torch.nn.Linear.__init__

    def no_real_layers(self, *args, **kwargs):
        real_linear(self, *args, **kwargs)
        assert self.weight.is_meta, "a real layer was allocated before the size check"

    monkeypatch.setattr(torch.nn.Linear, "__init__", no_real_layers)
    with pytest.raises(ValueError, match=message):
        make().fit(digits[0])


def test_size_budget_is_stated_in_the_docstrings():
    for doc in (ConvVAE._check_params.__doc__, DeepClustering._check_params.__doc__):
        assert "MAX_PARAMETERS" in doc and "2 GB" in doc
    assert engine.MAX_PARAMETERS == 100_000_000 and engine.MAX_ACTIVATIONS == 1 << 28
    assert "MAX_ACTIVATIONS" in VaDE.fit.__doc__


_SEQUENCES = [
    (lambda seq: ConvVAE(channels=seq, hidden_units=8, n_threads=1), "channels", (4, 8)),
    (
        lambda seq: ConvVAE(channels=(4, 8), strides=seq, hidden_units=8, n_threads=1),
        "strides",
        (2, 2),
    ),
    (lambda seq: ConvVAE(**DENSE | {"dense_sizes": seq}), "dense_sizes", (16, 8)),
    (
        lambda seq: DeepClustering(3, gmm_n_init=1, **{**DC, "hidden_sizes": seq}),
        "hidden_sizes",
        (16, 8),
    ),
]


@pytest.mark.parametrize("make, name, sizes", _SEQUENCES, ids=[s[1] for s in _SEQUENCES])
@pytest.mark.parametrize("form", ["generator", "iterator", "map", "set", "string"])
def test_one_shot_and_unordered_sequence_parameters_are_refused(digits, make, name, sizes, form):
    """A generator read while validating would leave nothing for the network (or for the next
    fit): refused, with the parameter and the remedy named; a set has no order."""
    value = {
        "generator": (s for s in sizes),
        "iterator": iter(sizes),
        "map": map(int, sizes),
        "set": set(sizes),
        "string": "16,8",
    }[form]
    with pytest.raises(ValueError, match=name) as info:
        make(value).fit(digits[0][:60], **({"epochs": 1} if name != "hidden_sizes" else {}))
    if form in ("generator", "iterator", "map"):
        assert "read only once" in str(info.value) and "tuple(" in str(info.value)


def _layer_sizes(model) -> list:
    net = getattr(model, "network_", None) or model.autoencoder_
    shapes = [tuple(p.shape) for name, p in net.named_parameters() if name.endswith("weight")]
    return shapes


@pytest.mark.parametrize("make, name, sizes", _SEQUENCES, ids=[s[1] for s in _SEQUENCES])
@pytest.mark.parametrize("form", [tuple, list, np.array])
def test_sequence_parameters_in_any_sequence_form_build_the_same_network(
    digits, make, name, sizes, form
):
    X = digits[0][:60]
    fit = {"epochs": 1} if name != "hidden_sizes" else {}
    kind = dict(epochs=1, random_state=0) if name == "hidden_sizes" else dict(random_state=0)
    reference = make(tuple(sizes)).set_params(**kind).fit(X, **fit)
    model = make(form(sizes)).set_params(**kind).fit(X, **fit)
    assert _layer_sizes(model) == _layer_sizes(reference)
    if name in ("dense_sizes", "hidden_sizes"):  # the hidden layers are there, in order
        widths = [shape[0] for shape in _layer_sizes(model)][: len(sizes)]
        assert widths == list(sizes)


def _fitted_state(model) -> dict:
    """What a fit leaves: every fitted attribute (the same objects) and the weights' values."""
    attrs = {k: v for k, v in vars(model).items() if k.endswith("_") and not k.startswith("_")}
    net = getattr(model, "network_", None) or getattr(model, "autoencoder_", None)
    if net is None and hasattr(model, "vae_"):
        net = model.vae_.network_
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    return {"attrs": attrs, "weights": weights, "params": model.get_params(deep=False)}


def _same_state(model, before) -> bool:
    after = _fitted_state(model)
    return (
        after["attrs"].keys() == before["attrs"].keys()
        and all(after["attrs"][k] is v for k, v in before["attrs"].items())
        and after["weights"].keys() == before["weights"].keys()
        and all(torch.equal(after["weights"][k], v) for k, v in before["weights"].items())
    )


_ESTIMATORS = {
    "ConvVAE": lambda: ConvVAE(latent_dim=2, epochs=1, random_state=0, **DENSE),
    "VaDE": lambda: _dense_vade(random_state=0),
    "DeepClustering": lambda: DeepClustering(3, epochs=1, random_state=0, gmm_n_init=1, **DC),
}


def _fail_mid_training(monkeypatch):
    def broken(*args, **kwargs):
        raise FloatingPointError("the training loss became nan at epoch 1; lower learning_rate.")

    monkeypatch.setattr(engine._TorchEstimator, "_evaluate", broken)


def _fail_in_the_mixture(monkeypatch):
    import gmmfast.mixture._gaussian_mixture as gm_module

    def broken(self, *args, **kwargs):
        raise ValueError("the mixture failed")

    monkeypatch.setattr(gm_module.GaussianMixture, "fit", broken)
    monkeypatch.setattr(gm_module.GaussianMixture, "fit_predict", broken)


_FAILURES = {
    "bad parameter": lambda model, X, mp: (model.set_params(learning_rate=-1.0), X)[1],
    "NaN image": lambda model, X, mp: np.where(np.arange(X.shape[1]) == 5, np.nan, X),
    "pixels above 1": lambda model, X, mp: X * 255,
    "too few images": lambda model, X, mp: X[:3],
    "error mid-training": lambda model, X, mp: (_fail_mid_training(mp), X)[1],
    "error after training": lambda model, X, mp: (_fail_in_the_mixture(mp), X)[1],
}


@pytest.mark.parametrize(
    "name, failure",
    [
        (name, failure)
        for name in sorted(_ESTIMATORS)
        for failure in sorted(_FAILURES)
        if not (name == "ConvVAE" and failure == "error after training")  # no mixture in it
    ],
)
def test_a_failed_fit_leaves_the_model_as_it_was(digits, monkeypatch, name, failure):
    """Unfitted stays unfitted; a fitted model keeps its previous fit (the same attributes, the
    same weights), whatever part of the second fit raised."""
    X = digits[0][:120]
    model = _ESTIMATORS[name]()
    X_bad = _FAILURES[failure](model, X, monkeypatch)
    with pytest.raises((ValueError, FloatingPointError)):
        model.fit(X_bad)
    assert not [k for k in vars(model) if k.endswith("_") and not k.startswith("_")]
    monkeypatch.undo()

    model = _ESTIMATORS[name]().fit(X)
    before = _fitted_state(model)
    X_bad = _FAILURES[failure](model, X, monkeypatch)
    with pytest.raises((ValueError, FloatingPointError)):
        model.fit(X_bad)
    assert _same_state(model, before)
    monkeypatch.undo()
    model.set_params(**before["params"])
    assert model.encode(X[:5]).shape[0] == 5  # still usable
