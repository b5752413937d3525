"""Tests for gmmfast.datasets: IDX parsing, checksums, search order, download."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import socket
import struct
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from gmmfast import datasets

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_MNIST_DIR = Path(
    os.environ.get("GMMFAST_MNIST_DIR", REPO_ROOT.parent / "shared" / "data" / "mnist")
)
STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


# --------------------------------------------------------------------------
# Helpers and fixtures
# --------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    """Serialise a uint8 array in the IDX format."""
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, 0x08, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False) -> Path:
    """Write `array` as an IDX file, gzipped if `gz`."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Small random MNIST-shaped images and labels."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) + seed) % 10
    return images, labels.astype(np.uint8)


def write_fake_mnist(directory: Path, *, seed: int = 0, gz: bool = True) -> dict[str, bytes]:
    """Write fake train and test MNIST files; return their IDX bytes by stem."""
    directory.mkdir(parents=True, exist_ok=True)
    contents = {}
    for offset, (image_stem, label_stem) in enumerate(STEMS.values()):
        images, labels = fake_split(12 + offset, seed + offset)
        for stem, array in ((image_stem, images), (label_stem, labels)):
            name = f"{stem}.gz" if gz else stem
            write_idx(directory / name, array, gz=gz)
            contents[stem] = idx_bytes(array)
    return contents


def md5_table(contents: dict[str, bytes]) -> dict[str, str]:
    """MD5 hex digests of `contents`, a checksum table for the loaders."""
    return {stem: hashlib.md5(data).hexdigest() for stem, data in contents.items()}


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """Keep tests away from the user's real data and cache directories."""
    monkeypatch.delenv("GMMFAST_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))


@pytest.fixture
def fake_mnist(tmp_path, monkeypatch) -> tuple[Path, dict[str, bytes]]:
    """A directory of fake MNIST files whose MD5s replace the real table."""
    directory = tmp_path / "fake"
    contents = write_fake_mnist(directory)
    monkeypatch.setattr(datasets, "MNIST_MD5", md5_table(contents))
    return directory, contents


# --------------------------------------------------------------------------
# read_idx
# --------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("shape", [(5, 28, 28), (7,), (3, 4), (2, 3, 4, 5)])
def test_read_idx_round_trip(tmp_path, gz, shape):
    array = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    path = write_idx(tmp_path / "data-idx-ubyte", array, gz=gz)
    result = datasets.read_idx(path)
    assert result.dtype == np.uint8
    assert result.flags.writeable
    np.testing.assert_array_equal(result, array)


def test_read_idx_md5(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    path = write_idx(tmp_path / "labels", array, gz=True)
    good = hashlib.md5(idx_bytes(array)).hexdigest()
    np.testing.assert_array_equal(datasets.read_idx(path, md5=good), array)
    with pytest.raises(ValueError, match="checksum mismatch"):
        datasets.read_idx(path, md5="0" * 32)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_truncated(tmp_path, gz):
    data = idx_bytes(np.zeros((4, 28, 28), dtype=np.uint8))[:-1]
    path = tmp_path / "short-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(ValueError, match=r"short-idx3-ubyte.*truncated"):
        datasets.read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros(3, dtype=np.uint8)) + b"\0")
    with pytest.raises(ValueError, match="long.*trailing bytes"):
        datasets.read_idx(path)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "not an IDX file"),
        (b"\x01\x02\x08\x01\0\0\0\0", "bad magic number 0x01020801"),
        (b"\0\0\x08\x00", "bad magic number"),
        (b"\0\0\x0d\x01\0\0\0\x01abcd", "unsupported IDX data type 0x0d"),
        (b"\0\0\x08\x03\0\0\0\x01", "truncated IDX header"),
        (b"<html>Not found</html>", "bad magic number"),
    ],
)
def test_read_idx_rejects_non_idx(tmp_path, content, problem):
    path = tmp_path / "bogus-file"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="bogus-file") as info:
        datasets.read_idx(path)
    assert problem in str(info.value)


def test_read_idx_corrupt_gzip(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(100, dtype=np.uint8)))[:-10])
    with pytest.raises(ValueError, match="cut.gz.*gzip"):
        datasets.read_idx(path)


# --------------------------------------------------------------------------
# load_idx_dir
# --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["train", "test"])
@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dotted", [False, True])
def test_load_idx_dir_names(tmp_path, kind, gz, dotted):
    images, labels = fake_split(9, seed=3)
    for stem, array in zip(STEMS[kind], (images, labels), strict=True):
        name = stem.replace("-idx", ".idx") if dotted else stem
        write_idx(tmp_path / (f"{name}.gz" if gz else name), array, gz=gz)
    got_images, got_labels = datasets.load_idx_dir(tmp_path, kind)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_load_idx_dir_general_image_shape(tmp_path):
    images = np.zeros((4, 32, 20), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(4, dtype=np.uint8))
    assert datasets.load_idx_dir(tmp_path)[0].shape == (4, 32, 20)


def test_load_idx_dir_count_mismatch(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="5 images but .* 4 labels"):
        datasets.load_idx_dir(tmp_path)


def test_load_idx_dir_wrong_ndim(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 784), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="expected 3-d images"):
        datasets.load_idx_dir(tmp_path)


def test_load_idx_dir_missing_file(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(FileNotFoundError, match="t10k-labels-idx1-ubyte"):
        datasets.load_idx_dir(tmp_path, "test")


def test_load_idx_dir_missing_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        datasets.load_idx_dir(tmp_path / "nowhere")


def test_load_idx_dir_bad_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        datasets.load_idx_dir(tmp_path, "validation")


def test_load_idx_dir_does_not_checksum_by_default(tmp_path, monkeypatch):
    # Fashion-MNIST and KMNIST reuse the MNIST file names.
    write_fake_mnist(tmp_path)
    monkeypatch.setattr(datasets, "MNIST_MD5", {s: "0" * 32 for s in STEMS["train"]})
    assert datasets.load_idx_dir(tmp_path)[0].shape == (12, 28, 28)


# --------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------


def test_checksum_accepts_recompressed_copy(fake_mnist, tmp_path):
    directory, contents = fake_mnist
    copy = tmp_path / "recompressed"
    copy.mkdir()
    for stem, data in contents.items():
        # Another level and timestamp give different .gz bytes, same content.
        recompressed = gzip.compress(data, compresslevel=1, mtime=123456)
        assert recompressed != (directory / f"{stem}.gz").read_bytes()
        (copy / f"{stem}.gz").write_bytes(recompressed)
    X, y = datasets.load_mnist(copy, as_float=False)
    np.testing.assert_array_equal(X, datasets.load_mnist(directory, as_float=False)[0])


def test_checksum_accepts_uncompressed_copy(fake_mnist, tmp_path):
    _, contents = fake_mnist
    for stem, data in contents.items():
        (tmp_path / stem).write_bytes(data)
    assert datasets.load_mnist(tmp_path, kind="test")[0].shape == (13, 784)


def test_checksum_rejects_modified_file(fake_mnist):
    directory, contents = fake_mnist
    data = bytearray(contents["train-images-idx3-ubyte"])
    data[-1] ^= 0xFF
    (directory / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(data)))
    expected = r"train-images-idx3-ubyte\.gz: checksum mismatch.*re-download"
    with pytest.raises(ValueError, match=expected):
        datasets.load_mnist(directory)


def test_checksum_dotted_name_is_known(fake_mnist, tmp_path):
    _, contents = fake_mnist
    data = bytearray(contents["t10k-labels-idx1-ubyte"])
    data[-1] ^= 0xFF
    (tmp_path / "t10k-labels.idx1-ubyte").write_bytes(bytes(data))
    (tmp_path / "t10k-images.idx3-ubyte").write_bytes(contents["t10k-images-idx3-ubyte"])
    with pytest.raises(ValueError, match="checksum mismatch"):
        datasets.load_mnist(tmp_path, kind="test")


def test_checksum_table_matches_published_values():
    assert datasets.MNIST_MD5 == {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    }


@pytest.mark.skipif(not REAL_MNIST_DIR.is_dir(), reason=f"no MNIST at {REAL_MNIST_DIR}")
def test_real_mnist():
    X_train, y_train, X_test, y_test = datasets.load_mnist(REAL_MNIST_DIR, kind="both")
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784)
    assert X_train.dtype == X_test.dtype == np.float32
    assert X_train.min() == 0.0 and X_train.max() == 1.0
    assert y_train.dtype == y_test.dtype == np.int64
    np.testing.assert_array_equal(y_train[:5], [5, 0, 4, 1, 9])
    np.testing.assert_array_equal(y_test[:5], [7, 2, 1, 0, 4])
    assert np.bincount(y_test).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# --------------------------------------------------------------------------
# load_mnist: output format and search order
# --------------------------------------------------------------------------


def test_load_mnist_formats(fake_mnist):
    directory, _ = fake_mnist
    X, y = datasets.load_mnist(directory)
    images, labels = datasets.load_mnist(directory, as_float=False)
    assert X.shape == (12, 784) and X.dtype == np.float32
    assert 0.0 <= X.min() and X.max() <= 1.0
    assert images.shape == (12, 28, 28) and images.dtype == np.uint8
    np.testing.assert_allclose(X, images.reshape(12, -1) / 255.0, rtol=1e-6)
    assert y.dtype == labels.dtype == np.int64
    parts = datasets.load_mnist(directory, kind="both")
    assert [len(p) for p in parts] == [12, 12, 13, 13]


def test_load_mnist_bad_kind(fake_mnist):
    with pytest.raises(ValueError, match="kind"):
        datasets.load_mnist(fake_mnist[0], kind="all")


@pytest.fixture
def three_dirs(tmp_path, monkeypatch) -> dict[str, Path]:
    """Fake MNIST in an explicit dir, an env-var dir and a cache dir.

    Each directory has different labels, so the one used can be told
    apart; the checksum table is emptied so all of them load.
    """
    monkeypatch.setattr(datasets, "MNIST_MD5", {})
    dirs = {name: tmp_path / name for name in ("explicit", "env", "cache")}
    for seed, directory in enumerate(dirs.values(), start=1):
        write_fake_mnist(directory, seed=seed)
    return dirs


def origin(y: np.ndarray) -> int:
    """Return the seed `write_fake_mnist` used for a train label vector."""
    return int(y[0])


def test_search_order_data_dir_first(three_dirs, monkeypatch):
    monkeypatch.setenv("GMMFAST_DATA", str(three_dirs["env"]))
    _, y = datasets.load_mnist(three_dirs["explicit"], cache_dir=three_dirs["cache"])
    assert origin(y) == 1


def test_search_order_env_before_cache(three_dirs, monkeypatch):
    monkeypatch.setenv("GMMFAST_DATA", str(three_dirs["env"]))
    _, y = datasets.load_mnist(cache_dir=three_dirs["cache"])
    assert origin(y) == 2


def test_search_order_falls_back_to_cache(three_dirs, monkeypatch, tmp_path):
    monkeypatch.setenv("GMMFAST_DATA", str(tmp_path / "empty"))
    _, y = datasets.load_mnist(cache_dir=three_dirs["cache"])
    assert origin(y) == 3
    _, y = datasets.load_mnist(tmp_path / "empty", cache_dir=three_dirs["cache"])
    assert origin(y) == 3


def test_default_cache_dir_xdg(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "MNIST_MD5", {})
    write_fake_mnist(tmp_path / "xdg" / "gmmfast" / "mnist", seed=4)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert origin(datasets.load_mnist()[1]) == 4


def test_default_cache_dir_home(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "MNIST_MD5", {})
    write_fake_mnist(tmp_path / "home" / ".cache" / "gmmfast" / "mnist", seed=5)
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("USERPROFILE", str(tmp_path / "home"))  # what Path.home() reads on Windows
    assert origin(datasets.load_mnist()[1]) == 5


def test_not_found_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="download=True") as info:
        datasets.load_mnist(tmp_path / "a", cache_dir=tmp_path / "b")
    assert str(tmp_path / "a") in str(info.value) and str(tmp_path / "b") in str(info.value)


def test_split_needs_both_kinds_in_one_dir(fake_mnist, tmp_path):
    directory, _ = fake_mnist
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    assert len(datasets.load_mnist(directory, kind="train")) == 2
    with pytest.raises(FileNotFoundError):
        datasets.load_mnist(directory, kind="both", cache_dir=tmp_path / "cache")


# --------------------------------------------------------------------------
# Embedded sample
# --------------------------------------------------------------------------


def test_sample_file_is_small():
    path = REPO_ROOT / "gmmfast" / "data" / "mnist_sample.npz"
    if path.exists():
        assert path.stat().st_size < 2_000_000


def test_load_mnist_sample_raw():
    X_train, y_train, X_test, y_test = datasets.load_mnist_sample(as_float=False)
    assert X_train.shape == (5000, 28, 28) and X_test.shape == (1000, 28, 28)
    assert X_train.dtype == X_test.dtype == np.uint8
    assert y_train.dtype == y_test.dtype == np.int64
    assert np.bincount(y_train).tolist() == [500] * 10
    assert np.bincount(y_test).tolist() == [100] * 10
    # Shuffled, not grouped by class.
    assert len(set(y_train[:50].tolist())) > 5


def test_load_mnist_sample_float():
    X_train, y_train, X_test, y_test = datasets.load_mnist_sample()
    assert X_train.shape == (5000, 784) and X_test.shape == (1000, 784)
    assert X_train.dtype == np.float32
    assert X_train.min() == 0.0 and X_train.max() == 1.0


# --------------------------------------------------------------------------
# Download from a local HTTP server
# --------------------------------------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serve files without logging to stderr, recording the paths asked for.

    Paths under ``/flaky/`` answer 503 (a transient failure) the first time
    each is asked for, then serve the file.
    """

    requests: list[str]

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self.requests.append(self.path)
        if self.path.startswith("/flaky/") and self.requests.count(self.path) == 1:
            self.send_error(503, "try again")
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """An HTTP server on an ephemeral 127.0.0.1 port serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    requests: list[str] = []
    handler = type("Handler", (QuietHandler,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield root, base, requests
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture
def mirrors(server, fake_mnist):
    """A mirror serving corrupted copies and one serving good copies."""
    root, base, requests = server
    _, contents = fake_mnist
    write_fake_mnist(root / "good", seed=0)
    (root / "bad").mkdir()
    for stem, data in contents.items():
        corrupted = bytearray(data)
        corrupted[len(data) // 2] ^= 0x55
        (root / "bad" / f"{stem}.gz").write_bytes(gzip.compress(bytes(corrupted)))
    return f"{base}/bad/", f"{base}/good", requests


def test_download_skips_corrupt_mirror(mirrors, fake_mnist, tmp_path):
    bad, good, requests = mirrors
    cache = tmp_path / "cache"
    X, y = datasets.load_mnist(download=True, mirrors=[bad, good], cache_dir=cache)
    np.testing.assert_array_equal(y, datasets.load_mnist(fake_mnist[0])[1])
    assert requests == [
        "/bad/train-images-idx3-ubyte.gz",
        "/good/train-images-idx3-ubyte.gz",
        "/bad/train-labels-idx1-ubyte.gz",
        "/good/train-labels-idx1-ubyte.gz",
    ]
    # The corrupt downloads were deleted; only verified files remain.
    assert sorted(p.name for p in cache.iterdir()) == [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
    ]


def test_download_only_missing_files(mirrors, fake_mnist, tmp_path):
    _, good, requests = mirrors
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "t10k-images-idx3-ubyte").write_bytes(fake_mnist[1]["t10k-images-idx3-ubyte"])
    datasets.load_mnist(download=True, kind="test", mirrors=[good], cache_dir=cache)
    assert requests == ["/good/t10k-labels-idx1-ubyte.gz"]
    # A second call finds everything in the cache.
    datasets.load_mnist(download=True, kind="both", mirrors=[good], cache_dir=cache)
    assert len(requests) == 3


def test_download_all_mirrors_fail(mirrors, tmp_path):
    bad, good, _ = mirrors
    missing = good.replace("/good", "/nothing-here")
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="any mirror") as info:
        datasets.load_mnist(download=True, mirrors=[missing, bad], cache_dir=cache)
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message
    assert "404" in message and "checksum mismatch" in message
    assert list(cache.iterdir()) == []


def test_download_refused_connection(tmp_path, fake_mnist):
    # A port just released by the OS has no listener: connections are refused.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    with pytest.raises(RuntimeError, match="refused"):
        datasets.load_mnist(download=True, mirrors=[url], cache_dir=tmp_path / "cache")


def test_download_retries_transient_failure(server, fake_mnist, tmp_path):
    # A 503 is transient: pooch asks the same mirror again (after a second).
    root, base, requests = server
    write_fake_mnist(root / "flaky", seed=0)
    X, y = datasets.load_mnist(download=True, mirrors=[f"{base}/flaky"], cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(y, datasets.load_mnist(fake_mnist[0])[1])
    assert requests == [
        "/flaky/train-images-idx3-ubyte.gz",
        "/flaky/train-images-idx3-ubyte.gz",
        "/flaky/train-labels-idx1-ubyte.gz",
        "/flaky/train-labels-idx1-ubyte.gz",
    ]


def test_download_does_not_retry_404(mirrors, tmp_path):
    # A 404 will not change by asking again: straight to the next mirror.
    _, good, requests = mirrors
    missing = good.replace("/good", "/nothing-here")
    datasets.load_mnist(download=True, mirrors=[missing, good], cache_dir=tmp_path / "cache")
    assert requests == [
        "/nothing-here/train-images-idx3-ubyte.gz",
        "/good/train-images-idx3-ubyte.gz",
        "/nothing-here/train-labels-idx1-ubyte.gz",
        "/good/train-labels-idx1-ubyte.gz",
    ]


def test_download_progress_bar_only_when_bars_are_on(mirrors, tmp_path, capsys):
    from gmmfast.utils import _progress

    _, good, _ = mirrors
    datasets.load_mnist(download=True, mirrors=[good], cache_dir=tmp_path / "quiet")
    assert capsys.readouterr().err == ""  # a library call is silent (pooch's log held too)
    with _progress.progress_bars(True):
        datasets.load_mnist(download=True, mirrors=[good], cache_dir=tmp_path / "bars")
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and "train-labels-idx1-ubyte.gz" in err


def test_download_without_pooch_says_what_to_install(fake_mnist, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pooch", None)  # import pooch -> ImportError
    with pytest.raises(ImportError, match=r"needs pooch: pip install 'gmmfast\[download\]'"):
        datasets.load_mnist(download=True, mirrors=["http://127.0.0.1:9/"], cache_dir=tmp_path)
    # Files already on disk need no pooch, download=True or not.
    assert len(datasets.load_mnist(fake_mnist[0], download=True)) == 2
