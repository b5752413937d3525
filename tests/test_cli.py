"""The gmmfast command: subcommands on files, one-line errors, the demo."""

from __future__ import annotations

import functools
import importlib.util
import io
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from gmmfast import GaussianMixture, cli
from gmmfast.cli import load_images, main, make_observed
from gmmfast.cli._data import _scaled
from gmmfast.cli.bench import _benchmark_suite
from gmmfast.utils import _progress


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
    code, out, err = run(
        capsys,
        "classify",
        "--train",
        str(files / "train.npz"),
        "--test",
        str(files / "test.npz"),
        "--n-components",
        "1",
        "--save-model",
        str(tmp_path / "m.npz"),
        "--out",
        str(tmp_path / "p.npz"),
    )
    assert code == 0, err
    accuracy = float(out.split("accuracy ")[1].split("%")[0])
    assert accuracy > 95.0
    with np.load(tmp_path / "p.npz", allow_pickle=False) as result:
        assert result["predictions"].shape == (100,)
        assert result["log_proba"].shape == (100, 2)
    # The saved model classifies the same way.
    code, out2, err = run(
        capsys, "classify", "--model", str(tmp_path / "m.npz"), "--test", str(files / "test.npz")
    )
    assert code == 0, err
    assert out2.split("accuracy ")[1].splitlines()[0] == out.split("accuracy ")[1].splitlines()[0]


def test_classify_with_missing_pixels(files, capsys):
    code, out, err = run(
        capsys,
        "classify",
        "--train",
        str(files / "train.npz"),
        "--test",
        str(files / "test.npz"),
        "--n-components",
        "1",
        "--mask",
        "random",
        "--fraction",
        "0.5",
    )
    assert code == 0, err
    assert "50% of pixels missing" in out
    assert float(out.split("accuracy ")[1].split("%")[0]) > 90.0


def test_inpaint_writes_filled_images(files, tmp_path, capsys):
    code, out, err = run(
        capsys,
        "inpaint",
        "--train",
        str(files / "train.npz"),
        "--images",
        str(files / "test.npz"),
        "--n-components",
        "1",
        "--mask",
        "top",
        "--out",
        str(tmp_path / "f.npz"),
    )
    assert code == 0, err
    with np.load(tmp_path / "f.npz", allow_pickle=False) as result:
        filled, observed = result["filled"], result["observed"]
    X, _ = load_images(files / "test.npz", "test", need_labels=False)
    assert filled.shape == X.shape and np.isfinite(filled).all()
    assert np.array_equal(filled[observed], X[observed].astype(np.float64))
    assert (filled >= 0).all() and (filled <= 1).all()
    assert not observed[:, :8].any() and observed[:, 8:].all()  # top half of 4 x 4


@pytest.mark.parametrize(
    "argv, message",
    [
        (["classify", "--train", "{d}/missing.npz", "--test", "{d}/test.npz"], "no such file"),
        (["classify", "--train", "{d}/nolabels.npz", "--test", "{d}/test.npz"], "no labels"),
        (["classify", "--train", "{d}/wrongkeys.npz", "--test", "{d}/test.npz"], "no images"),
        (["classify", "--train", "{d}/mismatch.npz", "--test", "{d}/test.npz"], "99 labels"),
        (
            ["classify", "--train", "{d}/garbage.npz", "--test", "{d}/test.npz"],
            "not a readable .npz",
        ),
        (["classify", "--model", "{d}/test.npz", "--test", "{d}/test.npz"], "gmmfast model"),
        (["classify", "--test", "{d}/test.npz"], "--model FILE, or --train"),
        (
            [
                "inpaint",
                "--train",
                "{d}/train.npz",
                "--images",
                "{d}/test.npz",
                "--fraction",
                "1.5",
            ],
            "--fraction",
        ),
    ],
)
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
    result = subprocess.run(
        [sys.executable, "-m", "gmmfast", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0
    for command in ("demo", "classify", "inpaint", "denoise", "bench"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "required: COMMAND"),
        (["nonsense"], "invalid choice"),
        (["denoise", "--images", "x.npz", "--sigma", "-1"], "--sigma: expected a positive number"),
        (["classify", "--test", "x.npz", "--n-components", "two"], "--n-components"),
        (["demo", "--k-sweep", "0,1"], "positive integers"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gmmfast: error: ") and message in err


def test_help_exits_0(capsys):
    code, out, _ = run(capsys, "denoise", "--help")
    assert code == 0 and "--add-noise" in out and "--blur-sigma" in out


def test_demo_on_shipped_sample(tmp_path, capsys):
    """The main job end to end on the embedded sample: accuracy, inpainting,
    denoising, a report and (with matplotlib) figures."""
    code, out, err = run(capsys, "demo", "--out", str(tmp_path), "--k-sweep", "1")
    assert code == 0, err
    assert err == ""  # no bars: stderr is not a terminal and no --verbose
    clean = float(out.split("test accuracy ")[1].split("%")[0])
    missing = float(out.split("missing (1000 images): accuracy ")[1].split("%")[0])
    assert clean > 94.0 and missing > 92.0
    k1 = float(out.split("K=1: fitted in ")[1].split("test accuracy ")[1].split("%")[0])
    assert 90.0 < k1 < clean
    noisy = float(out.split("PSNR ")[1].split(" dB")[0])
    restored = {
        m: float(out.split(f"  {m}: PSNR ")[1].split(" dB")[0])
        for m in ("map", "posterior_mean", "epll")
    }
    assert all(value > noisy + 5 for value in restored.values()), (noisy, restored)
    report = (tmp_path / "report.md").read_text()
    assert "| clean (1000) |" in report and "## Inpainting" in report and "## Denoising" in report
    assert "| 1 | " in report and "| 2 | " in report  # accuracy against K
    assert f"| map | {restored['map']:.2f} |" in report
    figures = ("accuracy_vs_k.png", "em_curve.png", "inpainting.png", "denoising.png")
    if importlib.util.find_spec("matplotlib"):
        for name in figures:
            assert (tmp_path / name).stat().st_size > 1000
            assert f"]({name})" in report
    else:
        assert "figures skipped" in out and "Skipped: matplotlib is not installed" in report


def test_demo_bad_data_dir_is_one_line(tmp_path, capsys):
    code, out, err = run(
        capsys, "demo", "--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")
    )
    assert code == 2 and err.count("\n") == 1 and "MNIST files not found" in err


def _mnist_like_dir(directory: Path, sample, n_train: int = 400, n_test: int = 100) -> Path:
    """An IDX directory with MNIST's file names holding other 28 x 28 images
    (the sample's digits, inverted), as Fashion-MNIST or KMNIST would."""
    import gzip
    import struct

    def write(name: str, array: np.ndarray) -> None:
        header = struct.pack(f">BBBB{array.ndim}I", 0, 0, 0x08, array.ndim, *array.shape)
        (directory / name).write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))

    X, y, X_test, y_test = sample
    directory.mkdir()
    for prefix, images, labels in (
        ("train", X[:n_train], y[:n_train]),
        ("t10k", X_test[:n_test], y_test[:n_test]),
    ):
        write(f"{prefix}-images-idx3-ubyte.gz", np.round(255 * (1 - images)).reshape(-1, 28, 28))
        write(f"{prefix}-labels-idx1-ubyte.gz", labels)
    return directory


def test_demo_on_another_mnist_like_set(mnist_sample, tmp_path, capsys):
    """--data-dir is checked against MNIST's checksums (one line naming the
    way out); --no-checksum runs the demo on any MNIST-like IDX set."""
    data = _mnist_like_dir(tmp_path / "idx", mnist_sample)
    code, out, err = run(capsys, "demo", "--data-dir", str(data), "--out", str(tmp_path / "a"))
    assert code == 2 and err.count("\n") == 1
    assert "checksum mismatch" in err and "--no-checksum" in err
    code, out, err = run(
        capsys,
        "demo",
        "--data-dir",
        str(data),
        "--no-checksum",
        "--n-components",
        "1",
        "--k-sweep",
        "none",
        "--out",
        str(tmp_path / "b"),
    )
    assert code == 0, err
    assert "400 training and 100 test images" in out
    accuracy = float(out.split("test accuracy ")[1].split("%")[0])
    assert accuracy > 60.0  # inverted digits are still digits: well above chance
    assert "IDX files in" in (tmp_path / "b" / "report.md").read_text()
    code, out, err = run(capsys, "demo", "--no-checksum", "--out", str(tmp_path / "c"))
    assert code == 2 and "--no-checksum reads --data-dir" in err


def test_demo_download_failure_is_one_line(tmp_path, capsys, monkeypatch):
    """--download with every mirror failing (a loopback port with no listener): one line, exit 2."""
    import socket

    from gmmfast import datasets

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    monkeypatch.setattr(datasets, "MNIST_MIRRORS", (url, url))
    monkeypatch.delenv("GMMFAST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, out, err = run(capsys, "demo", "--download", "--out", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1
    assert "could not download a valid train-images-idx3-ubyte.gz" in err and "refused" in err


def test_demo_download_without_pooch_is_one_line(tmp_path, capsys, monkeypatch):
    """--download without pooch (the download extra): one line naming the extra, exit 2."""
    monkeypatch.setitem(sys.modules, "pooch", None)  # import pooch -> ImportError
    monkeypatch.delenv("GMMFAST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    code, out, err = run(capsys, "demo", "--download", "--out", str(tmp_path / "o"))
    assert code == 2 and err.count("\n") == 1
    assert "--download: downloading MNIST needs pooch: pip install 'gmmfast[download]'" in err


def test_figures_skipped_without_matplotlib(files, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    code, out, err = run(
        capsys,
        "inpaint",
        "--train",
        str(files / "train.npz"),
        "--images",
        str(files / "test.npz"),
        "--n-components",
        "1",
        "--figure",
        str(tmp_path / "f.png"),
    )
    assert code == 0, err
    assert "matplotlib is not installed" in out and not (tmp_path / "f.png").exists()


def test_pyplot_without_matplotlib_names_the_extra_or_returns_none(monkeypatch):
    from gmmfast.utils._plotting import pyplot

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"gmmfast\[plot\]"):
        pyplot()
    assert pyplot(required=False) is None


def test_inpaint_figure(files, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code, out, err = run(
        capsys,
        "inpaint",
        "--train",
        str(files / "train.npz"),
        "--images",
        str(files / "test.npz"),
        "--n-components",
        "1",
        "--figure",
        str(tmp_path / "f.png"),
    )
    assert code == 0, err
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_classify_k_search_from_the_command_line(files, capsys):
    code, out, err = run(
        capsys,
        "classify",
        "--train",
        str(files / "train.npz"),
        "--test",
        str(files / "test.npz"),
        "--n-components",
        "1,2",
        "--selection",
        "bic",
    )
    assert code == 0, err
    assert "K per class {0: 1, 1: 1}" in out  # BIC prefers one Gaussian for one-blob classes


def test_pixel_scaling():
    """Integers and 0..255 floats are divided by 255; noisy [0, 1] floats (above 1) are kept."""
    noisy = np.array([[0.0, 1.4, -0.3]])
    np.testing.assert_array_equal(_scaled(noisy), noisy)
    np.testing.assert_allclose(_scaled(np.array([[0.0, 255.0]])), [[0.0, 1.0]])
    np.testing.assert_allclose(_scaled(np.array([[0, 255]], dtype=np.uint8)), [[0.0, 1.0]])


# ------------------------------------------------------------------ denoise
@pytest.fixture(scope="module")
def smooth(tmp_path_factory):
    """Small smooth images (12 x 12, blurred noise in [0, 1]) that a patch prior learns quickly."""
    from scipy import ndimage

    d = tmp_path_factory.mktemp("denoise")
    rng = np.random.default_rng(0)

    def images(n):
        x = ndimage.gaussian_filter(rng.random((n, 12, 12)), sigma=(0, 2, 2))
        x = (x - x.min(axis=(1, 2), keepdims=True)) / np.ptp(x, axis=(1, 2), keepdims=True)
        return x

    train, test = images(60), images(6)
    np.savez(d / "train.npz", images=(train * 255).astype(np.uint8))
    np.savez(d / "clean.npz", images=test)
    noisy = test + 0.2 * rng.standard_normal(test.shape)
    np.savez(d / "noisy.npz", images=noisy)
    np.savez(d / "flat.npz", images=noisy.reshape(6, 144))
    np.savez(d / "odd.npz", images=np.zeros((6, 15)))
    np.savez(d / "nan.npz", images=np.where(np.eye(12, dtype=bool), np.nan, noisy))
    np.savez(d / "tiny.npz", images=np.zeros((3, 3, 3)))
    return d


PRIOR = ("--patch-size", "4", "--n-components", "3", "--max-patches", "3000", "--max-iter", "10")


def test_denoise_add_noise_fits_saves_and_improves_psnr(smooth, tmp_path, capsys):
    code, out, err = run(
        capsys,
        "denoise",
        "--train",
        str(smooth / "train.npz"),
        *PRIOR,
        "--images",
        str(smooth / "clean.npz"),
        "--add-noise",
        "--sigma",
        "0.2",
        "--method",
        "map",
        "--save-model",
        str(tmp_path / "d.npz"),
        "--out",
        str(tmp_path / "r.npz"),
    )
    assert code == 0, err
    assert "fitted a 3-component prior on 4x4 patches of 60 images" in out
    with np.load(tmp_path / "r.npz") as result:
        assert set(result.files) == {"restored", "noisy", "psnr", "psnr_input"}
        restored, noisy, gain = (
            result["restored"],
            result["noisy"],
            result["psnr"] - result["psnr_input"],
        )
    assert restored.shape == noisy.shape == (6, 12, 12)
    assert (restored >= 0).all() and (restored <= 1).all()
    assert (gain > 3).all(), gain
    assert "PSNR 13.9" in out or "PSNR 14." in out  # sigma 0.2 on [0, 1] pixels: about 14 dB

    # The same noise again (same --seed) with the saved model: the same result.
    code, out2, err = run(
        capsys,
        "denoise",
        "--model",
        str(tmp_path / "d.npz"),
        "--images",
        str(smooth / "clean.npz"),
        "--add-noise",
        "--sigma",
        "0.2",
        "--method",
        "map",
        "--out",
        str(tmp_path / "r2.npz"),
    )
    assert code == 0, err
    with np.load(tmp_path / "r2.npz") as result:
        np.testing.assert_allclose(result["restored"], restored, atol=1e-6)


@pytest.mark.parametrize("method", ["posterior_mean", "epll"])
def test_denoise_noisy_input_with_reference(smooth, tmp_path, capsys, method):
    code, out, err = run(
        capsys,
        "denoise",
        "--train",
        str(smooth / "train.npz"),
        *PRIOR,
        "--images",
        str(smooth / "flat.npz"),
        "--reference",
        str(smooth / "clean.npz"),
        "--sigma",
        "0.2",
        "--method",
        method,
        "--out",
        str(tmp_path / "r.npz"),
    )
    assert code == 0, err
    with np.load(tmp_path / "r.npz") as result:
        assert "noisy" not in result.files
        assert result["restored"].shape == (6, 12, 12)  # 144 pixels: square images
        assert result["psnr"].mean() > result["psnr_input"].mean() + 3


def test_deblur_and_figure(smooth, tmp_path, capsys):
    code, out, err = run(
        capsys,
        "denoise",
        "--train",
        str(smooth / "train.npz"),
        *PRIOR,
        "--images",
        str(smooth / "clean.npz"),
        "--add-noise",
        "--sigma",
        "0.05",
        "--blur-sigma",
        "1.0",
        "--method",
        "epll",
        "--out",
        str(tmp_path / "r.npz"),
        "--figure",
        str(tmp_path / "r.png"),
    )
    assert code == 0, err
    assert "deblurred (Gaussian blur of 1.0 px)" in out
    with np.load(tmp_path / "r.npz") as result:
        assert (
            result["psnr"].mean() > result["psnr_input"].mean() + 1
        )  # EPLL undoes the blur over whole images
    if importlib.util.find_spec("matplotlib"):
        assert (tmp_path / "r.png").stat().st_size > 1000
    else:
        assert "matplotlib is not installed" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--images", "{d}/clean.npz", "--sigma", "0.1"], "--model FILE, or --train DATA"),
        (
            ["--images", "{d}/missing.npz", "--sigma", "0.1", "--train", "{d}/train.npz"],
            "no such file",
        ),
        (["--images", "{d}/odd.npz", "--sigma", "0.1", "--train", "{d}/train.npz"], "not square"),
        (["--images", "{d}/nan.npz", "--sigma", "0.1", "--train", "{d}/train.npz"], "NaN"),
        (
            ["--images", "{d}/tiny.npz", "--sigma", "0.1", "--train", "{d}/train.npz", *PRIOR],
            "smaller than",
        ),
        (
            ["--images", "{d}/clean.npz", "--sigma", "0.1", "--model", "{d}/clean.npz"],
            "gmmfast model",
        ),
        (
            ["--images", "{d}/clean.npz", "--sigma", "0.1", "--model", "{d}/nothere.npz"],
            "no such model file",
        ),
        (
            [
                "--images",
                "{d}/noisy.npz",
                "--sigma",
                "0.1",
                "--train",
                "{d}/train.npz",
                "--reference",
                "{d}/odd.npz",
            ],
            "not square",
        ),
        (
            [
                "--images",
                "{d}/clean.npz",
                "--sigma",
                "0.1",
                "--train",
                "{d}/train.npz",
                "--add-noise",
                "--reference",
                "{d}/clean.npz",
            ],
            "--reference is for inputs",
        ),
        (["--images", "{d}/clean.npz", "--sigma", "0.1", "--method", "wiener"], "invalid choice"),
    ],
)
def test_denoise_bad_input_is_one_line_and_exit_2(smooth, capsys, argv, message):
    code, out, err = run(capsys, "denoise", *[a.format(d=smooth) for a in argv])
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("gmmfast: error: ")
    assert message in err
    assert "Traceback" not in err


def test_denoise_with_a_classifier_model_is_refused(files, smooth, tmp_path, capsys):
    code, _, err = run(
        capsys,
        "classify",
        "--train",
        str(files / "train.npz"),
        "--test",
        str(files / "test.npz"),
        "--n-components",
        "1",
        "--save-model",
        str(tmp_path / "clf.npz"),
    )
    assert code == 0, err
    code, _, err = run(
        capsys,
        "denoise",
        "--model",
        str(tmp_path / "clf.npz"),
        "--images",
        str(smooth / "clean.npz"),
        "--sigma",
        "0.1",
    )
    assert code == 2 and err.count("\n") == 1 and "PatchDenoiser" in err


# -------------------------------------------------------------------- bench
def test_bench_without_scikit_learn_says_what_to_install(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    code, out, err = run(capsys, "bench", "--quick")
    assert code == 2
    assert err.count("\n") == 1 and "pip install 'gmmfast[bench]'" in err


def _quick_compare():
    """benchmarks/quick_compare.py of this checkout, imported by path (it is not part of the package)."""
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "quick_compare.py"
    if not script.is_file():
        pytest.skip("no benchmarks/ beside the tests")
    spec = importlib.util.spec_from_file_location("quick_compare", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_quick(capsys, *argv):
    code = _quick_compare().main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_bench_quick_prints_ratio_table(capsys, monkeypatch):
    pytest.importorskip("sklearn")
    monkeypatch.setitem(sys.modules, "skimage", None)  # the scikit-image part has its own test
    code, out, err = run_quick(capsys, "--bench-n", "300", "--n-components", "2", "--repeats", "1")
    assert code == 0, err
    assert "vs scikit-learn" in out and "300 images" in out
    rows = [
        line.split()
        for line in out.splitlines()
        if line.startswith(("score_samples", "em_iteration"))
    ]
    assert [r[:2] for r in rows] == [
        [c, v]
        for c in ("score_samples", "em_iteration")
        for v in ("sklearn", "gmmfast-f64", "gmmfast-f32")
    ]
    assert all(
        r[4].endswith("x") and float(r[4][:-1]) > 0 for r in rows
    )  # case variant median (min) ratio (ratio)
    assert "scikit-image is not installed" in out


def test_bench_quick_scikit_image_part(capsys):
    pytest.importorskip("sklearn")
    pytest.importorskip("skimage")
    code, out, err = run_quick(capsys, "--bench-n", "100", "--n-components", "2", "--repeats", "1")
    assert code == 0, err
    assert "gmmfast.patches.extract_patches" in out and "skimage non-local means" in out
    psnrs = {
        line[:38].strip(): float(line.split()[-1])
        for line in out.splitlines()
        if line.startswith(("gmmfast map", "skimage TV"))
    }
    assert psnrs["gmmfast map"] > 18 and psnrs["skimage TV (Chambolle, weight 0.15)"] > 15


def test_bench_runs_a_pytest_suite(tmp_path, capfd):
    pytest.importorskip("sklearn")
    pytest.importorskip("pytest_benchmark")
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "pytest.ini").write_text("[pytest]\npython_files = bench_*.py\n")
    (suite / "conftest.py").write_text("")
    (suite / "bench_fake.py").write_text("def test_fake():\n    print('FAKE SUITE RAN')\n")
    code = main(["bench", "--benchmarks", str(suite), "--", "-s", "-q"])
    out, err = capfd.readouterr()
    assert code == 0, out + err
    assert "running the benchmark suite" in out and "FAKE SUITE RAN" in out and "1 passed" in out


def test_bench_bad_suite_dir(tmp_path, capsys):
    pytest.importorskip("sklearn")
    code, _, err = run(capsys, "bench", "--benchmarks", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "no conftest.py" in err


def test_bench_quick_runs_the_suite_script(capfd):
    pytest.importorskip("sklearn")
    if _benchmark_suite(None) is None:
        pytest.skip("gmmfast is not installed from a source checkout")
    code = main(["bench", "--quick", "--bench-n", "100", "--n-components", "2", "--repeats", "1"])
    out, err = capfd.readouterr()
    assert code == 0, out + err
    assert "running the quick comparison" in out and "vs scikit-learn" in out


def test_bench_finds_the_source_tree_suite():
    suite = _benchmark_suite(None)
    repo_suite = Path(cli.__file__).resolve().parents[2] / "benchmarks"
    assert suite == (repo_suite if (repo_suite / "conftest.py").is_file() else None)


# ----------------------------------------------------------- progress bars
class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_wanted_only_on_a_terminal_or_verbose(monkeypatch):
    assert not _progress.wanted(False, stream=io.StringIO())
    assert _progress.wanted(False, stream=FakeTTY()) == _progress.available()
    assert _progress.wanted(True) == _progress.available()
    monkeypatch.setattr(_progress, "_tqdm", None)  # tqdm not installed
    assert not _progress.wanted(True) and not _progress.wanted(False, stream=FakeTTY())
    with _progress.progress_bars(True) as on:
        assert not on and isinstance(_progress.bar(total=3), _progress.NullBar)


@pytest.mark.filterwarnings("ignore::gmmfast.ConvergenceWarning")
def test_progress_silent_by_default_and_when_not_a_terminal(capsys):
    X = np.random.RandomState(0).randn(200, 3)
    GaussianMixture(2, max_iter=5, random_state=0).fit(X)  # library default: no bars
    with _progress.progress_bars():  # stderr is captured: not a terminal
        GaussianMixture(2, max_iter=5, random_state=0).fit(X)
    assert capsys.readouterr() == ("", "")


@pytest.mark.filterwarnings("ignore::gmmfast.ConvergenceWarning")
def test_progress_shown_with_verbose(capsys, monkeypatch):
    tqdm = pytest.importorskip("tqdm")
    # Draw on every update (tqdm redraws at most every 0.1 s by default).
    monkeypatch.setattr(_progress, "_tqdm", functools.partial(tqdm.tqdm, mininterval=0, miniters=1))
    X = np.random.RandomState(0).randn(200, 3)
    with _progress.progress_bars(verbose=True) as on:
        assert on
        GaussianMixture(2, max_iter=5, tol=0.0, random_state=0).fit(X)
    out, err = capsys.readouterr()
    assert out == ""  # bars go to stderr only
    assert (
        "EM K=2" in err and "5/5" in err and "change" in err
    )  # iterations, and the log-likelihood change


@pytest.mark.filterwarnings("ignore::gmmfast.ConvergenceWarning")
def test_progress_without_tqdm_keeps_verbose_lines(capsys, monkeypatch):
    monkeypatch.setattr(_progress, "_tqdm", None)
    X = np.random.RandomState(0).randn(200, 3)
    with _progress.progress_bars(verbose=True):
        GaussianMixture(2, max_iter=4, tol=0.0, verbose=1, verbose_interval=2, random_state=0).fit(
            X
        )
    out, err = capsys.readouterr()
    assert err == "" and "Iteration 2" in out and "Iteration 4" in out


def test_cli_verbose_shows_bars_and_messages(files, capsys):
    pytest.importorskip("tqdm")
    argv = [
        "classify",
        "--train",
        str(files / "train.npz"),
        "--test",
        str(files / "test.npz"),
        "--n-components",
        "1,2",
        "--selection",
        "bic",  # the verbose messages below are BIC's (the command's default is held-out)
    ]
    code, out, err = run(capsys, *argv)
    assert code == 0 and err == ""  # not a terminal, no --verbose: quiet
    code, out, err = run(capsys, *argv, "--verbose")
    assert code == 0, err
    assert (
        "GMMClassifier" in err and "K search" in err and "EM K=" in err
    )  # bars: classes, K search, EM
    assert "[GMMClassifier] class 0: K=1 BIC" in out  # verbose messages still on stdout


def test_ctrl_c_stops_cleanly_with_bars_open(files, capsys, monkeypatch):
    tqdm = pytest.importorskip("tqdm")
    calls = []
    original = GaussianMixture._m_step

    def interrupted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GaussianMixture, "_m_step", interrupted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "EM interrupted; ..."
        code, out, err = run(
            capsys,
            "classify",
            "--train",
            str(files / "train.npz"),
            "--test",
            str(files / "test.npz"),
            "--n-components",
            "1",
            "--verbose",
        )
    assert code == 130
    assert err.rstrip().endswith("gmmfast: interrupted") and "Traceback" not in err
    assert len(tqdm.tqdm._instances) == 0  # every bar was closed


def test_npz_keys_follow_the_split(tmp_path):
    """One Keras-style file holds both splits: --train reads x_train, --test x_test;
    a channel axis of size 1 and (n, 1) labels are accepted."""
    from gmmfast.cli import load_images

    rng = np.random.RandomState(0)
    np.savez(
        tmp_path / "both.npz",
        x_train=rng.randint(0, 256, (6, 4, 4, 1)).astype(np.uint8),
        y_train=np.arange(6)[:, None],
        x_test=rng.randint(0, 256, (3, 1, 4, 4)).astype(np.uint8),
        y_test=np.arange(3),
    )
    X, y = load_images(tmp_path / "both.npz", "train", need_labels=True)
    assert X.shape == (6, 16) and y.tolist() == list(range(6))
    X, y = load_images(tmp_path / "both.npz", "test", need_labels=True)
    assert X.shape == (3, 16) and y.tolist() == [0, 1, 2]


@pytest.mark.parametrize("shifts", ["test", "train"])
def test_classify_with_shifts_matches_the_estimator(files, tmp_path, capsys, shifts):
    from gmmfast import GMMClassifier, ShiftInvariantClassifier

    code, out, err = run(
        capsys,
        "classify",
        "--train",
        str(files / "train.npz"),
        "--test",
        str(files / "test.npz"),
        "--n-components",
        "1",
        "--shifts",
        shifts,
        "--save-model",
        str(tmp_path / "m.npz"),
        "--out",
        str(tmp_path / "p.npz"),
    )
    assert code == 0, err
    X, y = load_images(files / "train.npz", "train", need_labels=True)
    X_test, _ = load_images(files / "test.npz", "test", need_labels=False)
    base = GMMClassifier(1, reg_covar=0.05, random_state=0)
    expected = (
        ShiftInvariantClassifier(base).fit(X, y)
        if shifts == "train"
        else ShiftInvariantClassifier.from_fitted(base.fit(X, y))
    )
    with np.load(tmp_path / "p.npz", allow_pickle=False) as result:
        np.testing.assert_allclose(
            result["log_proba"], expected.predict_log_proba(X_test), rtol=1e-10, atol=1e-12
        )
    # a model trained with shifts classifies with them when loaded; inpaint uses its mixtures
    model_kind = "ShiftInvariantClassifier" if shifts == "train" else "GMMClassifier"
    from gmmfast.utils._model_files import model_kind as kind_of

    assert kind_of(tmp_path / "m.npz") == model_kind
    code, out, err = run(
        capsys,
        "classify",
        "--model",
        str(tmp_path / "m.npz"),
        "--test",
        str(files / "test.npz"),
        "--out",
        str(tmp_path / "q.npz"),
    )
    assert code == 0, err
    with np.load(tmp_path / "q.npz", allow_pickle=False) as result:
        if shifts == "train":
            np.testing.assert_allclose(
                result["log_proba"], expected.predict_log_proba(X_test), rtol=1e-10, atol=1e-12
            )
        else:  # a plain model file: no shifts unless asked
            np.testing.assert_allclose(
                result["log_proba"],
                expected.classifier_.predict_log_proba(X_test),
                rtol=1e-10,
                atol=1e-12,
            )
    code, out, err = run(
        capsys,
        "inpaint",
        "--model",
        str(tmp_path / "m.npz"),
        "--images",
        str(files / "test.npz"),
        "--mask",
        "top",
    )
    assert code == 0, err
    assert "MSE on the missing pixels" in out


def test_shifts_train_needs_training_data(files, tmp_path, capsys):
    code, out, err = run(
        capsys,
        "classify",
        "--train",
        str(files / "train.npz"),
        "--test",
        str(files / "test.npz"),
        "--n-components",
        "1",
        "--save-model",
        str(tmp_path / "m.npz"),
    )
    assert code == 0, err
    code, out, err = run(
        capsys,
        "classify",
        "--model",
        str(tmp_path / "m.npz"),
        "--test",
        str(files / "test.npz"),
        "--shifts",
        "train",
    )
    assert code == 2 and err.count("\n") == 1 and "--shifts train fits on shifted copies" in err
