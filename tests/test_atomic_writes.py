"""Atomic writes: a failed or interrupted save leaves the old file intact and no temporary file.

Failures are simulated three ways: a serialiser that raises after writing
part of the file (an ``OSError`` as from a full disk, and a
``KeyboardInterrupt`` as from Ctrl-C), and a real file-size limit
(``RLIMIT_FSIZE``, in a subprocess, so the kernel itself refuses the
write part-way). The command's ``--out`` is checked to write exactly the
path it prints.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from gmmfast import GaussianMixture, GMMClassifier
from gmmfast.utils import _atomic


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.RandomState(0)
    X = np.vstack([rng.randn(60, 5), rng.randn(60, 5) + 3])
    y = np.repeat([0, 1], 60)
    small = GaussianMixture(1, random_state=0, n_threads=1).fit(X)
    large = GaussianMixture(4, random_state=0, n_threads=1).fit(X)
    clf = GMMClassifier(1, random_state=0, n_threads=1).fit(X, y)
    return small, large, clf, X, y


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def _failing_writer(exc: BaseException, after: int = 100):
    """A stand-in for np.savez(file, ...) / torch.save(obj, file) that writes ``after`` bytes
    to the file it is given, then raises ``exc``."""

    def write(*args, **kwargs):
        fh = next(a for a in args if hasattr(a, "write"))
        fh.write(b"\0" * after)
        raise exc

    return write


@pytest.mark.parametrize(
    "exc",
    [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
    ids=["disk-full", "ctrl-c"],
)
def test_model_survives_a_failed_save(fitted, tmp_path, monkeypatch, exc):
    small, large, _, X, _ = fitted
    path = tmp_path / "model.npz"
    small.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(np, "savez", _failing_writer(exc))
    with pytest.raises(type(exc)):
        large.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []
    np.testing.assert_array_equal(
        GaussianMixture.load(path).score_samples(X), small.score_samples(X)
    )


def test_new_file_is_not_created_by_a_failed_save(fitted, tmp_path, monkeypatch):
    monkeypatch.setattr(
        np, "savez", _failing_writer(OSError(errno.ENOSPC, "No space left on device"))
    )
    with pytest.raises(OSError):
        fitted[0].save(tmp_path / "new.npz")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "exc",
    [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()],
    ids=["disk-full", "ctrl-c"],
)
def test_vae_model_survives_a_failed_save(tmp_path, monkeypatch, exc):
    torch = pytest.importorskip("torch")
    from gmmfast.vae import ConvVAE

    rng = np.random.RandomState(0)
    vae = ConvVAE(
        latent_dim=2,
        channels=(4,),
        hidden_units=8,
        epochs=1,
        batch_size=8,
        random_state=0,
        n_threads=1,
    ).fit(rng.rand(24, 8, 8).astype(np.float32))
    path = tmp_path / "vae.pt"
    vae.save(path)
    before = path.read_bytes()
    monkeypatch.setattr(torch, "save", _failing_writer(exc))
    with pytest.raises(type(exc)):
        vae.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before and _leftovers(tmp_path) == []
    ConvVAE.load(path, device="cpu")


_FSIZE_SCRIPT = r"""
import json, resource, signal, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
from gmmfast import GaussianMixture
path, limit = sys.argv[1], int(sys.argv[2])
rng = np.random.RandomState(0)
large = GaussianMixture(8, random_state=0, n_threads=1).fit(rng.randn(400, 20))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
try:
    large.save(path)
    result = "saved"
except OSError as exc:
    result = f"OSError {exc.errno}"
print(json.dumps(result))
"""


def test_model_survives_a_file_size_limit(fitted, tmp_path):
    """A real failed write: the kernel refuses bytes beyond RLIMIT_FSIZE part-way through the save."""
    small, _, _, X, _ = fitted
    path = tmp_path / "model.npz"
    small.save(path)
    before = path.read_bytes()
    limit = len(before) + 2000  # the larger model (~30 kB) cannot fit
    result = subprocess.run(
        [sys.executable, "-c", _FSIZE_SCRIPT, str(path), str(limit)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tempfile.gettempdir(),  # away from the source tree
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == f"OSError {errno.EFBIG}"
    assert path.read_bytes() == before and _leftovers(tmp_path) == []
    np.testing.assert_array_equal(
        GaussianMixture.load(path).score_samples(X), small.score_samples(X)
    )


def test_atomic_write_details(tmp_path):
    """The file appears only complete, with the permissions open() would give; a directory is refused."""
    path = tmp_path / "data.bin"
    with _atomic.atomic_write(path) as fh:
        fh.write(b"abc")
        assert not path.exists()  # nothing at the target until the block succeeds
        assert len(_leftovers(tmp_path)) == 1 and _leftovers(tmp_path)[0].startswith(".data.bin.")
    assert path.read_bytes() == b"abc" and _leftovers(tmp_path) == []
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    path.chmod(0o640)
    with _atomic.atomic_write(path) as fh:
        fh.write(b"defg")
    assert path.read_bytes() == b"defg" and path.stat().st_mode & 0o777 == 0o640
    link = tmp_path / "link.bin"
    link.symlink_to(path)
    with _atomic.atomic_write(link) as fh:
        fh.write(b"through the link")
    assert link.is_symlink() and path.read_bytes() == b"through the link"
    with pytest.raises(IsADirectoryError):
        with _atomic.atomic_write(tmp_path) as fh:
            fh.write(b"x")
    with pytest.raises(FileNotFoundError):
        with _atomic.atomic_write(tmp_path / "no-such-dir" / "f") as fh:
            fh.write(b"x")


class _FakeFigure:
    """Duck-typed figure: savefig writes some bytes, then fails if asked to."""

    def __init__(self, fail: BaseException | None = None):
        self.fail, self.formats = fail, []

    def savefig(self, fh, format=None, **kwargs):
        self.formats.append(format)
        fh.write(b"\x89PNG partial")
        if self.fail is not None:
            raise self.fail


def test_figures_are_written_atomically(tmp_path):
    path = tmp_path / "figure.png"
    path.write_bytes(b"old figure")
    with pytest.raises(KeyboardInterrupt):
        _atomic.savefig_atomic(_FakeFigure(KeyboardInterrupt()), path, dpi=110)
    assert path.read_bytes() == b"old figure" and _leftovers(tmp_path) == []
    fig = _FakeFigure()
    _atomic.savefig_atomic(fig, path, dpi=110)
    _atomic.savefig_atomic(fig, tmp_path / "plain", dpi=110)
    _atomic.savefig_atomic(fig, tmp_path / "vector.SVG", dpi=110)
    assert fig.formats == ["png", "png", "svg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figure.png", "plain", "vector.SVG"]


# --------------------------------------------------------------------------
# The command's --out
# --------------------------------------------------------------------------


@pytest.fixture
def data(fitted, tmp_path):
    _, _, clf, X, y = fitted
    clf.save(tmp_path / "clf.npz")
    np.savez(tmp_path / "test.npz", x_test=X[:10], y_test=y[:10])
    return tmp_path


@pytest.mark.parametrize(
    "name, written", [("preds", "preds.npz"), ("preds.npz", "preds.npz"), ("p.v1", "p.v1.npz")]
)
def test_out_writes_exactly_the_printed_path(data, capsys, name, written):
    from gmmfast.cli import main

    code = main(
        [
            "classify",
            "--model",
            str(data / "clf.npz"),
            "--test",
            str(data / "test.npz"),
            "--out",
            str(data / name),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"wrote {data / written}\n" in out
    assert (f"has no .npz suffix: writing {data / written}" in out) == (name != written)
    assert sorted(p.name for p in data.iterdir()) == sorted({"clf.npz", "test.npz", written})
    with np.load(data / written) as archive:
        assert archive["predictions"].shape == (10,)


def test_out_directory_is_refused_before_any_work(data, capsys):
    from gmmfast.cli import main

    (data / "results").mkdir()
    for target in (data / "results", data / "results.npz"):
        target.mkdir(exist_ok=True)
        code = main(
            [
                "classify",
                "--model",
                str(data / "clf.npz"),
                "--test",
                str(data / "test.npz"),
                "--out",
                str(data / "results"),
            ]
        )
        captured = capsys.readouterr()
        assert code == 2 and "is a directory" in captured.err and captured.err.count("\n") == 1
        assert "classified" not in captured.out
    assert sorted(p.name for p in data.iterdir()) == [
        "clf.npz",
        "results",
        "results.npz",
        "test.npz",
    ]


@pytest.mark.parametrize("command", ["classify", "inpaint"])
def test_out_survives_a_failed_write(data, capsys, monkeypatch, command):
    from gmmfast.cli import main

    out = data / "out.npz"
    out.write_bytes(b"previous results")
    monkeypatch.setattr(
        np, "savez_compressed", _failing_writer(OSError(errno.ENOSPC, "No space left on device"))
    )
    images = "--test" if command == "classify" else "--images"
    code = main(
        [
            command,
            "--model",
            str(data / "clf.npz"),
            images,
            str(data / "test.npz"),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "No space left" in err
    assert out.read_bytes() == b"previous results" and _leftovers(data) == []


def test_save_model_survives_ctrl_c(data, capsys, monkeypatch, fitted):
    from gmmfast.cli import main

    model = data / "saved.npz"
    fitted[2].save(model)
    before = model.read_bytes()
    np.savez(data / "train.npz", x_train=fitted[3], y_train=fitted[4])
    monkeypatch.setattr(np, "savez", _failing_writer(KeyboardInterrupt()))
    code = main(
        [
            "classify",
            "--train",
            str(data / "train.npz"),
            "--test",
            str(data / "test.npz"),
            "--n-components",
            "1",
            "--save-model",
            str(model),
        ]
    )
    assert code == 130
    assert model.read_bytes() == before and _leftovers(data) == []
