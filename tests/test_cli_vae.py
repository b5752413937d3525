"""``gmmfast vae``: train, classify, reconstruct, sample on small .npz files; one-line errors."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gmmfast.cli import UsageError, main
from gmmfast.cli.vae import load_data

TINY = ["--channels", "4", "8", "8", "8", "8", "--hidden-units", "32", "--n-threads", "1"]


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def files(tmp_path_factory, mnist_sample):
    """Training data of all ten digits (uint8, (n, 28, 28, 1), keras-like keys), and
    test data of digits 1, 4, 8 (floats, images/labels keys); and bad files."""
    X, y, X_test, y_test = mnist_sample
    d = tmp_path_factory.mktemp("vae_cli")
    np.savez(
        d / "train.npz",
        x_train=np.round(X[:400] * 255).astype(np.uint8).reshape(-1, 28, 28, 1),
        y_train=y[:400],
    )
    keep = np.isin(y_test, [1, 4, 8])
    np.savez(d / "test.npz", images=X_test[keep][:60], labels=y_test[keep][:60])
    np.savez(d / "keras.npz", x_train=X[:5], y_train=y[:5], x_test=X_test[:3], y_test=y_test[:3])
    np.savez(d / "nolabels.npz", images=X_test[:20])
    np.savez(d / "wrongkeys.npz", pixels=X_test[:20])
    np.savez(d / "mismatch.npz", images=X_test[:20], labels=y_test[:19])
    np.savez(
        d / "nan.npz", images=np.where(np.arange(784) == 3, np.nan, X_test[:20]), labels=y_test[:20]
    )
    np.savez(d / "notsquare.npz", images=X_test[:20, :700], labels=y_test[:20])
    np.savez(d / "object.npz", images=np.array([{"a": 1}], dtype=object))
    (d / "garbage.npz").write_bytes(b"not a zip file")
    (d / "garbage.pt").write_bytes(b"not a model either")
    return d


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(files, tmp_path_factory, torch):
    """``gmmfast vae train`` on digits 1, 4, 8 of the training file, 2 epochs of a tiny network."""
    d = tmp_path_factory.mktemp("vae_model")
    code = main(
        [
            "vae",
            "train",
            "--train",
            str(files / "train.npz"),
            "--digits",
            "1",
            "4",
            "8",
            "--epochs",
            "2",
            "--save-model",
            str(d / "vae.pt"),
            "--save-gmm",
            str(d / "gmm.npz"),
            "--test",
            str(files / "test.npz"),
            *TINY,
        ]
    )
    assert code == 0
    return d


def test_train_saves_the_vae_and_the_latent_gmm(trained, files, capsys, tmp_path):
    from gmmfast import GMMClassifier
    from gmmfast.vae import ConvVAE

    vae = ConvVAE.load(trained / "vae.pt")
    clf = GMMClassifier.load(trained / "gmm.npz")
    assert vae.latent_dim == 2 and vae.n_epochs_ == 2 and vae.channels == (4, 8, 8, 8, 8)
    assert clf.classes_.tolist() == [1, 4, 8] and clf.n_features_in_ == 2
    # the printed report, on a fresh run with figures
    pytest.importorskip("matplotlib")
    code, out, err = run(
        capsys,
        "vae",
        "train",
        "--train",
        files / "train.npz",
        "--digits",
        1,
        4,
        8,
        "--epochs",
        1,
        "--save-model",
        tmp_path / "v.pt",
        "--test",
        files / "test.npz",
        "--figures",
        tmp_path / "fig",
        *TINY,
    )
    assert code == 0, err
    assert "s per epoch" in out and "macro precision" in out and "F1" in out
    assert (tmp_path / "v-gmm.npz").exists()  # default name beside the model
    for name in ("reconstructions", "samples", "latent_space", "manifold"):
        assert (tmp_path / "fig" / f"{name}.png").stat().st_size > 1000


def test_classify_prints_accuracy_and_macro_scores(trained, files, capsys, tmp_path):
    code, out, err = run(
        capsys,
        "vae",
        "classify",
        "--model",
        trained / "vae.pt",
        "--gmm",
        trained / "gmm.npz",
        "--test",
        files / "test.npz",
        "--out",
        tmp_path / "p.npz",
        "--cluster",
        "--n-threads",
        1,
    )
    assert code == 0, err
    line = next(row for row in out.splitlines() if row.startswith("accuracy"))
    accuracy, precision = (
        float(line.split(word)[1].split("%")[0]) for word in ("accuracy ", "precision ")
    )
    assert 0 <= accuracy <= 100 and 0 <= precision <= 100 and "recall" in line and "F1" in line
    assert "NMI" in out and "ARI" in out
    with np.load(tmp_path / "p.npz", allow_pickle=False) as result:
        assert result["predictions"].shape == (60,) and set(result["predictions"]) <= {1, 4, 8}
        assert result["log_proba"].shape == (60, 3) and result["latents"].shape == (60, 2)
    # fitting the latent GMM on --train instead gives the same classifier (same seed)
    code, out2, err = run(
        capsys,
        "vae",
        "classify",
        "--model",
        trained / "vae.pt",
        "--train",
        files / "train.npz",
        "--digits",
        1,
        4,
        8,
        "--test",
        files / "test.npz",
        "--n-threads",
        1,
    )
    assert code == 0, err
    assert next(row for row in out2.splitlines() if row.startswith("accuracy")) == line


def test_reconstruct_and_sample_write_npz(trained, files, capsys, tmp_path):
    code, out, err = run(
        capsys,
        "vae",
        "reconstruct",
        "--model",
        trained / "vae.pt",
        "--images",
        files / "test.npz",
        "--out",
        tmp_path / "r.npz",
    )
    assert code == 0, err
    assert "mean squared error" in out
    with np.load(tmp_path / "r.npz", allow_pickle=False) as result:
        R = result["reconstructions"]
        assert R.shape == (60, 28, 28) and R.min() >= 0 and R.max() <= 1
        assert result["latents"].shape == (60, 2) and result["labels"].shape == (60,)
    code, out, err = run(
        capsys,
        "vae",
        "sample",
        "--model",
        trained / "vae.pt",
        "--gmm",
        trained / "gmm.npz",
        "-n",
        4,
        "--out",
        tmp_path / "s.npz",
    )
    assert code == 0, err
    with np.load(tmp_path / "s.npz", allow_pickle=False) as result:
        assert (
            result["images"].shape == (12, 28, 28)
            and result["labels"].tolist() == [1] * 4 + [4] * 4 + [8] * 4
        )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--train", "{d}/missing.npz"], "no such file"),
        (["train", "--train", "{d}/garbage.npz"], "not a readable .npz"),
        (["train", "--train", "{d}/object.npz"], "not a readable .npz"),
        (["train", "--train", "{d}/wrongkeys.npz"], "no images"),
        (["train", "--train", "{d}/mismatch.npz"], "20 images but 19 labels"),
        (["train", "--train", "{d}/nan.npz"], "NaN"),
        (["train", "--train", "{d}/notsquare.npz"], "are not square"),
        (["train", "--train", "{d}/nolabels.npz", "--digits", "1"], "--digits needs labels"),
        (["train", "--train", "{d}/test.npz", "--digits", "7"], "no images of the digits 7"),
        (
            [
                "classify",
                "--model",
                "{d}/garbage.pt",
                "--gmm",
                "{d}/x.npz",
                "--test",
                "{d}/test.npz",
            ],
            "not a gmmfast VAE model",
        ),
        (
            [
                "classify",
                "--model",
                "{d}/missing.pt",
                "--gmm",
                "{d}/x.npz",
                "--test",
                "{d}/test.npz",
            ],
            "no such model file",
        ),
        (
            ["classify", "--model", "{d}/test.npz", "--gmm", "{d}/x.npz", "--test", "{d}/test.npz"],
            "not a gmmfast VAE model",
        ),
        (
            [
                "reconstruct",
                "--model",
                "{d}/garbage.pt",
                "--images",
                "{d}/test.npz",
                "--out",
                "{d}/r.npz",
            ],
            "not a gmmfast VAE",
        ),
    ],
)
def test_bad_files_give_one_line_errors(files, capsys, torch, argv, message):
    code, out, err = run(capsys, "vae", *[a.format(d=files) for a in argv], *TINY[-2:])
    assert code == 2
    assert err.startswith("gmmfast: error:") and err.count("\n") == 1, err
    assert message in err


def test_classify_needs_a_gmm(trained, files, capsys):
    code, _, err = run(
        capsys, "vae", "classify", "--model", trained / "vae.pt", "--test", files / "test.npz"
    )
    assert code == 2 and "give --gmm FILE" in err


def test_load_data_keys_and_scaling(files):
    X, y = load_data(files / "train.npz", "train", need_labels=True)
    assert X.shape == (400, 28, 28) and X.dtype == np.float32 and X.max() <= 1.0 and X.max() > 0.9
    X, y = load_data(files / "keras.npz", "train", need_labels=True)
    assert len(X) == 5 and len(y) == 5  # x_train/y_train for training
    X, y = load_data(files / "keras.npz", "test", need_labels=True)
    assert len(X) == 3 and len(y) == 3  # x_test/y_test for testing
    X, y = load_data(files / "train.npz", "test", need_labels=True, digits=[1, 4, 8])
    assert set(np.unique(y)) == {1, 4, 8}
    with pytest.raises(UsageError, match="no labels"):
        load_data(files / "nolabels.npz", "train", need_labels=True)


def test_vae_commands_without_torch(tmp_path):
    """`gmmfast --help` and `import gmmfast` need no torch; a vae command says how to get it, in one line."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import gmmfast, gmmfast.cli\n"
        "assert 'vae' in gmmfast.cli.build_parser().format_help()\n"
        "sys.exit(gmmfast.cli.main(['vae', 'train', '--train', 'x.npz']))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 2, out.stderr
    assert (
        out.stderr.startswith("gmmfast: error:")
        and "gmmfast[vae]" in out.stderr
        and out.stderr.count("\n") == 1
    )


def test_train_dense_architecture(files, capsys, tmp_path, torch):
    """--architecture dense trains the DEC/VaDE dense network and saves it as such."""
    from gmmfast.vae import ConvVAE

    code, out, err = run(
        capsys,
        "vae",
        "train",
        "--train",
        files / "train.npz",
        "--architecture",
        "dense",
        "--epochs",
        "1",
        "--save-model",
        tmp_path / "dense.pt",
        "--n-threads",
        "1",
    )
    assert code == 0, err
    assert ConvVAE.load(tmp_path / "dense.pt").architecture == "dense"
    code, _, err = run(
        capsys, "vae", "train", "--train", files / "train.npz", "--architecture", "mlp"
    )
    assert code != 0 and "architecture" in err


# ------------------------------- round two: everything checked before training
@pytest.mark.parametrize(
    "extra, message",
    [
        (["--gmm-components", "1000", "--save-model", "{d}/g.pt"], "--gmm-components 1000: class"),
        (["--digits", "1", "--save-model", "{d}/g.pt"], "images of one class ([1])"),
        (["--test", "{f}/garbage.npz", "--save-model", "{d}/g.pt"], "not a readable .npz"),
        (["--test", "{f}/nolabels.npz", "--save-model", "{d}/g.pt"], "no labels"),
        (["--device", "gpu", "--save-model", "{d}/g.pt"], "--device"),
        (
            ["--architecture", "conv", "--hidden-units", "65536", "--channels", "4096", "4096"],
            "--channels, --hidden-units, --latent-dim: channels=(4096, 4096), hidden_units=65536",
        ),
        (["--latent-dim", "100000000"], "--latent-dim: expected an integer from 1 to 4096"),
        (
            ["--architecture", "conv", "--channels", *["4"] * 17],
            "--channels: 17 values; at most 16",
        ),
    ],
)
def test_train_checks_everything_before_training(files, capsys, tmp_path, torch, extra, message):
    """What only the data can tell (classes and their sizes, the test file, the network for
    these images) is still checked before the first epoch: one line, status 2, no file."""
    argv = ["vae", "train", "--train", files / "train.npz", "--architecture", "dense"]
    if "--architecture" in extra:
        argv = argv[:-2]
    code, out, err = run(capsys, *argv, *[a.format(d=tmp_path, f=files) for a in extra])
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert "training a VAE" not in out and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "option, value",
    [
        ("--gmm-components", "2"),
        ("--covariance-type", "diag"),
        ("--reg-covar", "0.1"),
        ("--save-gmm", "g.npz"),
        ("--test", "test.npz"),
    ],
)
def test_train_without_labels_refuses_the_classifier_options(
    files, capsys, tmp_path, torch, option, value
):
    """Without labels no latent classifier is fitted: its options are refused, not ignored."""
    if option == "--test":
        value = str(files / "test.npz")
    code, out, err = run(
        capsys, "vae", "train", "--train", files / "nolabels.npz", "--architecture", "dense",
        "--save-model", tmp_path / "m.pt", option, value,
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and f"{option} needs labels" in err, err
    assert list(tmp_path.iterdir()) == []


def test_train_with_distinct_outputs_writes_both(files, capsys, tmp_path, torch):
    """The issue's command line with two names: both files written, each what it should be."""
    from gmmfast import GMMClassifier
    from gmmfast.vae import ConvVAE

    code, _, err = run(
        capsys, "vae", "train", "--train", files / "train.npz", "--architecture", "dense",
        "--epochs", "1", "--save-model", tmp_path / "m.pt", "--save-gmm", tmp_path / "g.npz",
        "--n-threads", "1",
    )  # fmt: skip
    assert code == 0, err
    assert ConvVAE.load(tmp_path / "m.pt").architecture == "dense"
    assert GMMClassifier.load(tmp_path / "g.npz").n_features_in_ == 2


def test_classify_checks_the_test_labels_and_components_before_fitting(trained, files, capsys):
    code, out, err = run(
        capsys, "vae", "classify", "--model", trained / "vae.pt", "--gmm", trained / "gmm.npz",
        "--test", files / "nolabels.npz", "--cluster",
    )  # fmt: skip
    assert code == 2 and "--cluster" in err and "has none" in err and out == ""
    code, out, err = run(
        capsys, "vae", "classify", "--model", trained / "vae.pt", "--train", files / "train.npz",
        "--test", files / "test.npz", "--gmm-components", "5000",
    )  # fmt: skip
    assert code == 2 and "--gmm-components 5000: class" in err and "fitted" not in out
