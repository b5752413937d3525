"""The gmmfast command: subcommands on files, one-line errors, the demo."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gmmfast.cli import load_images, main, make_observed


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Small two-class 'images' (4 x 4 pixels) as .npz files with common key names."""
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.RandomState(0)
    def digits(n):
        y = rng.randint(0, 2, n)
        X = np.clip(0.25 + 0.5 * y[:, None] + 0.1 * rng.randn(n, 16), 0, 1)
        return (X * 255).astype(np.uint8).reshape(n, 4, 4), y
    Xtr, ytr = digits(300)
    Xte, yte = digits(100)
    np.savez(d / "train.npz", x_train=Xtr, y_train=ytr)
    np.savez(d / "test.npz", images=Xte, labels=yte)
    np.savez(d / "nolabels.npz", images=Xte)
    np.savez(d / "wrongkeys.npz", pixels=Xte)
    np.savez(d / "mismatch.npz", images=Xte, labels=yte[:-1])
    (d / "garbage.npz").write_bytes(b"not a zip file")
    return d


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_fits_saves_and_reports_accuracy(files, tmp_path, capsys):
    code, out, err = run(capsys, "classify", "--train", str(files / "train.npz"), "--test", str(files / "test.npz"),
                         "--n-components", "1", "--save-model", str(tmp_path / "m.npz"), "--out", str(tmp_path / "p.npz"))
    assert code == 0, err
    accuracy = float(out.split("accuracy ")[1].split("%")[0])
    assert accuracy > 95.0
    with np.load(tmp_path / "p.npz", allow_pickle=False) as result:
        assert result["predictions"].shape == (100,)
        assert result["log_proba"].shape == (100, 2)
    # The saved model classifies the same way.
    code, out2, err = run(capsys, "classify", "--model", str(tmp_path / "m.npz"), "--test", str(files / "test.npz"))
    assert code == 0, err
    assert out2.split("accuracy ")[1].splitlines()[0] == out.split("accuracy ")[1].splitlines()[0]


def test_classify_with_missing_pixels(files, capsys):
    code, out, err = run(capsys, "classify", "--train", str(files / "train.npz"), "--test", str(files / "test.npz"),
                         "--n-components", "1", "--mask", "random", "--fraction", "0.5")
    assert code == 0, err
    assert "50% of pixels missing" in out
    assert float(out.split("accuracy ")[1].split("%")[0]) > 90.0


def test_inpaint_writes_filled_images(files, tmp_path, capsys):
    code, out, err = run(capsys, "inpaint", "--train", str(files / "train.npz"), "--images", str(files / "test.npz"),
                         "--n-components", "1", "--mask", "top", "--out", str(tmp_path / "f.npz"))
    assert code == 0, err
    with np.load(tmp_path / "f.npz", allow_pickle=False) as result:
        filled, observed = result["filled"], result["observed"]
    X, _ = load_images(files / "test.npz", "test", need_labels=False)
    assert filled.shape == X.shape and np.isfinite(filled).all()
    assert np.array_equal(filled[observed], X[observed].astype(np.float64))
    assert (filled >= 0).all() and (filled <= 1).all()
    assert not observed[:, :8].any() and observed[:, 8:].all()  # top half of 4 x 4


@pytest.mark.parametrize("argv, message", [
    (["classify", "--train", "{d}/missing.npz", "--test", "{d}/test.npz"], "no such file"),
    (["classify", "--train", "{d}/nolabels.npz", "--test", "{d}/test.npz"], "no labels"),
    (["classify", "--train", "{d}/wrongkeys.npz", "--test", "{d}/test.npz"], "no images"),
    (["classify", "--train", "{d}/mismatch.npz", "--test", "{d}/test.npz"], "99 labels"),
    (["classify", "--train", "{d}/garbage.npz", "--test", "{d}/test.npz"], "not a readable .npz"),
    (["classify", "--model", "{d}/test.npz", "--test", "{d}/test.npz"], "gmmfast model"),
    (["classify", "--test", "{d}/test.npz"], "--model FILE, or --train"),
    (["inpaint", "--train", "{d}/train.npz", "--images", "{d}/test.npz", "--fraction", "1.5"], "--fraction"),
])
def test_bad_input_is_one_line_and_exit_2(files, capsys, argv, message):
    code, out, err = run(capsys, *[a.format(d=files) for a in argv])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gmmfast: error: ")
    assert message in err
    assert "Traceback" not in err


def test_masks():
    X = np.zeros((3, 784))
    top = make_observed(X, "top", 0.5, 0).reshape(3, 28, 28)
    assert not top[:, :14].any() and top[:, 14:].all()
    centre = make_observed(X, "centre", 0.5, 0).reshape(3, 28, 28)
    assert (~centre).sum(axis=(1, 2)).tolist() == [196] * 3 and not centre[:, 7:21, 7:21].any()
    random = make_observed(np.zeros((200, 784)), "random", 0.25, 0)
    assert abs((~random).mean() - 0.25) < 0.01
    X[0, 5] = np.nan
    assert make_observed(X, "nan", 0.0, 0).sum() == X.size - 1


def test_console_entry_and_help(tmp_path):
    # Run away from the source tree: `python -m` puts the working directory
    # first on sys.path, and the sources there have no compiled kernels.
    result = subprocess.run([sys.executable, "-m", "gmmfast", "--help"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0
    for command in ("demo", "classify", "inpaint"):
        assert command in result.stdout


def test_demo_on_shipped_sample(tmp_path, capsys):
    """The main job end to end on the embedded sample: accuracy and a report."""
    code, out, err = run(capsys, "demo", "--out", str(tmp_path))
    assert code == 0, err
    clean = float(out.split("test accuracy ")[1].split("%")[0])
    missing = float(out.split("missing (1000 images): accuracy ")[1].split("%")[0])
    assert clean > 94.0 and missing > 92.0
    report = (tmp_path / "report.md").read_text()
    assert "| clean (1000) |" in report and "Inpainting" in report
