"""Hostile and careless model files, for every model kind.

Each case is a file built from a real saved model: truncated, bit-flipped,
a zip bomb, a member whose header declares 10^11 elements, unknown or
pickled members, wrong dtypes, NaN, wrong shapes, fields that contradict
each other, a JSON header of the wrong types, huge numbers or deep nesting,
VAE configurations of absurd sizes. Every case must end in a
``ValueError`` (or ``FileNotFoundError``) whose message names the file, or
load a model equal to the one saved; never another exception, a crash, or
memory out of proportion. The cases that could crash the interpreter
(arbitrary bytes reaching zip, numpy and torch readers) and the memory
measurements run in subprocesses.
"""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gmmfast import GaussianMixture, GMMClassifier
from gmmfast.image import PatchDenoiser
from gmmfast.mixture import ShiftInvariantClassifier, _gaussian
from gmmfast.utils import _model_files

HERE = Path(__file__).resolve()
NPZ_KINDS = ("GaussianMixture", "GMMClassifier", "ShiftInvariantClassifier", "PatchDenoiser")
TORCH_KINDS = ("ConvVAE", "VaDE")


# --------------------------------------------------------------------------
# Models, loaders, comparison (also used by the subprocess below)
# --------------------------------------------------------------------------


def _loaders(vae: bool = True) -> dict:
    loaders = {
        "GaussianMixture": GaussianMixture.load,
        "GMMClassifier": GMMClassifier.load,
        "ShiftInvariantClassifier": ShiftInvariantClassifier.load,
        "PatchDenoiser": PatchDenoiser.load,
    }
    if not vae:  # torch not imported
        return loaders
    try:
        from gmmfast.vae import ConvVAE, VaDE
    except ImportError:
        return loaders
    loaders["ConvVAE"] = lambda p: ConvVAE.load(p, device="cpu")
    loaders["VaDE"] = lambda p: VaDE.load(p, device="cpu")
    return loaders


def _parameters(kind: str, model) -> dict[str, np.ndarray]:
    """Every fitted array of a model, by name (equal dicts: equal models)."""

    def mixture(prefix, gm):
        return {
            f"{prefix}{n}": np.asarray(getattr(gm, n))
            for n in ("weights_", "means_", "covariances_", "precisions_cholesky_")
        }

    if kind == "GaussianMixture":
        return mixture("", model)
    if kind == "PatchDenoiser":
        return mixture("", model.mixture_) | {"patch_size": np.array(model.patch_size)}
    if kind in ("GMMClassifier", "ShiftInvariantClassifier"):
        clf = model if kind == "GMMClassifier" else model.classifier_
        out = {"classes_": clf.classes_, "class_log_prior_": clf.class_log_prior_}
        for c, est in enumerate(clf.estimators_):
            out |= mixture(f"{c}.", est)
        if kind == "ShiftInvariantClassifier":
            out["shifts_"] = np.asarray(model.shifts_)
        return out
    vae = model if kind == "ConvVAE" else model.vae_
    out = {k: v.numpy() for k, v in vae.network_.state_dict().items()}
    if kind == "VaDE":
        out |= {"weights_": model.weights_, "means_": model.means_, "variances_": model.variances_}
    return out


def _same(kind: str, a, b) -> bool:
    pa, pb = _parameters(kind, a), _parameters(kind, b)
    return pa.keys() == pb.keys() and all(
        pa[k].dtype == pb[k].dtype and pa[k].shape == pb[k].shape and np.array_equal(pa[k], pb[k])
        for k in pa
    )


def _outcome(load, path, reference=None, kind=None) -> str:
    """'error' (a ValueError/FileNotFoundError naming the file), 'same' (loads the saved model),
    or a description of what went wrong (anything else is a failure)."""
    try:
        model = load(path)
    except (ValueError, FileNotFoundError) as exc:
        return "error" if str(path) in str(exc) else f"unnamed {type(exc).__name__}: {exc}"
    except BaseException as exc:  # noqa: BLE001 - the point is to catch everything else
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if reference is None:
        return "loaded"
    return "same" if _same(kind, model, reference) else "loaded a DIFFERENT model"


def _fit_models(directory: Path) -> dict[str, Path]:
    """Small fitted models of every kind, saved in ``directory``."""
    rng = np.random.RandomState(0)
    X = np.vstack([rng.randn(40, 4), rng.randn(40, 4) + 4])
    y = np.repeat([3, 7], 40)
    paths = {}
    GaussianMixture(2, random_state=0, n_threads=1).fit(X).save(
        paths.setdefault("GaussianMixture", directory / "gm.npz")
    )
    GMMClassifier(2, random_state=0, n_threads=1).fit(X, y).save(
        paths.setdefault("GMMClassifier", directory / "clf.npz")
    )
    images = np.clip(rng.rand(60, 3, 3) + np.repeat([0, 1], 30)[:, None, None], 0, 2).reshape(60, 9)
    ShiftInvariantClassifier(
        GMMClassifier(1, reg_covar=0.05, random_state=0, n_threads=1),
        image_shape=(3, 3),
        augment=False,
    ).fit(images, np.repeat([0, 1], 30)).save(
        paths.setdefault("ShiftInvariantClassifier", directory / "shift.npz")
    )
    PatchDenoiser(3, 2, max_iter=5, random_state=0, n_threads=1).fit(rng.rand(4, 8, 8)).save(
        paths.setdefault("PatchDenoiser", directory / "denoiser.npz")
    )
    try:
        import torch

        from gmmfast.vae import ConvVAE, VaDE
    except ImportError:
        return paths
    torch.set_num_threads(1)
    pictures = rng.rand(24, 8, 8).astype(np.float32)
    vae = ConvVAE(
        latent_dim=2,
        channels=(4,),
        hidden_units=8,
        epochs=1,
        batch_size=8,
        random_state=0,
        n_threads=1,
    ).fit(pictures)
    vae.save(paths.setdefault("ConvVAE", directory / "vae.pt"))
    VaDE(vae, n_clusters=2, epochs=1, batch_size=8, random_state=0, n_threads=1).fit(pictures).save(
        paths.setdefault("VaDE", directory / "vade.pt")
    )
    return paths


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    return _fit_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def loaders():
    return _loaders()


def _members(path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def _write_members(path, members: dict, compress: bool = False) -> Path:
    """An .npz of these members (np.savez keeps allow_pickle=True: objects are pickled)."""
    with open(path, "wb") as fh:
        (np.savez_compressed if compress else np.savez)(fh, **members)
    return Path(path)


def _meta(members) -> dict:
    return json.loads(str(members["__meta__"]))


def _with_meta(members, meta) -> dict:
    return members | {"__meta__": np.array(json.dumps(meta))}


def _legacy(members) -> dict:
    """The members in the older format, on purpose: each mixture's precisions_cholesky_ beside
    its covariances_ (as fit derives it), everything in float64."""
    params = _meta(members)["params"]
    covariance_type = params.get("classifier", params)["covariance_type"]
    out = {
        name: value.astype(np.float64) if value.dtype.kind == "f" else value
        for name, value in members.items()
    }
    for name, cov in members.items():
        if name.endswith("covariances_"):
            factor = _gaussian.precision_cholesky_from_covariances(
                cov.astype(np.float64), covariance_type
            )
            out[name[: -len("covariances_")] + "precisions_cholesky_"] = factor
    return out


# --------------------------------------------------------------------------
# Fuzzing: truncations and bit flips, in a subprocess
# --------------------------------------------------------------------------


def _fuzz(model_dir: Path, work: Path, n_flips: int) -> dict:
    """Truncate and bit-flip every saved model; returns {kind: {outcome: count}} and the failures."""
    loaders = _loaders()
    counts, failures = {}, []
    rng = np.random.RandomState(1234)
    for kind, name in (
        ("GaussianMixture", "gm.npz"),
        ("GMMClassifier", "clf.npz"),
        ("ShiftInvariantClassifier", "shift.npz"),
        ("PatchDenoiser", "denoiser.npz"),
        ("ConvVAE", "vae.pt"),
        ("VaDE", "vade.pt"),
    ):
        if kind not in loaders or not (model_dir / name).exists():
            continue
        data = (model_dir / name).read_bytes()
        reference = loaders[kind](model_dir / name)
        n = len(data)
        cases = [
            (f"truncated at {cut}", data[:cut])
            for cut in sorted(
                {0, 1, 4, 30, 100, n // 4, n // 2, 3 * n // 4, n - 100, n - 22, n - 1}
            )
        ]
        for pos in rng.choice(n, size=min(n, n_flips), replace=False):
            flipped = bytearray(data)
            flipped[pos] ^= 1 << rng.randint(8)
            cases.append((f"bit flipped at byte {pos}", bytes(flipped)))
        for label, content in cases:
            path = work / f"{kind}-case{name[name.index('.') :]}"
            path.write_bytes(content)
            outcome = _outcome(loaders[kind], path, reference, kind)
            counts.setdefault(kind, {}).setdefault(
                outcome if outcome in ("error", "same") else "FAILED", 0
            )
            counts[kind][outcome if outcome in ("error", "same") else "FAILED"] += 1
            if outcome not in ("error", "same"):
                failures.append(f"{kind}, {label}: {outcome}")
    return {"counts": counts, "failures": failures}


def test_truncated_and_bit_flipped_files(models, tmp_path):
    """Every truncation and a seeded sample of single-bit flips of every kind's file: a named
    ValueError, or (a flip in bytes that do not matter, such as a timestamp) the same model."""
    model_dir = models["GaussianMixture"].parent
    result = subprocess.run(
        [sys.executable, str(HERE), "fuzz", str(model_dir), str(tmp_path), "60"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tempfile.gettempdir(),  # away from the source tree
    )
    assert result.returncode == 0, result.stderr[-3000:]  # a crash of the interpreter shows here
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failures"] == []
    assert set(report["counts"]) == set(models)
    for kind, counts in report["counts"].items():
        assert counts.get("error", 0) >= 11, (kind, counts)  # at least every truncation is refused
    print("fuzz outcomes:", report["counts"])


# --------------------------------------------------------------------------
# Memory bombs
# --------------------------------------------------------------------------

BOMB_BYTES = 3 << 30  # 3 GiB of zeros, ~3 MB deflated


def _add_zero_member(path: Path, name: str, header_shape: tuple[int, ...], n_bytes: int) -> None:
    """Append member ``name`` to the archive: an .npy header for float64 ``header_shape``, then
    ``n_bytes`` zeros, deflated as they stream (a few MB on disk for GBs)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": header_shape}
    )
    chunk = bytes(1 << 22)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        with zf.open(name, "w", force_zip64=True) as fh:
            fh.write(header.getvalue())
            for _ in range(n_bytes // len(chunk)):
                fh.write(chunk)


@pytest.fixture(scope="module")
def bombs(models, tmp_path_factory) -> dict[str, Path]:
    """A valid classifier plus a 3 GiB zero member, unknown or posing as a parameter array."""
    directory = tmp_path_factory.mktemp("bombs")
    out = {}
    unknown = directory / "unknown-member.npz"
    unknown.write_bytes(models["GMMClassifier"].read_bytes())
    _add_zero_member(unknown, "bomb.npy", (BOMB_BYTES // 8,), BOMB_BYTES)
    out["unknown member"] = unknown
    # the same deflated stream (copied, not recompressed) as the classifier's class0.covariances_
    posing = directory / "posing-member.npz"
    members = _members(models["GMMClassifier"])
    del members["class0.covariances_"]
    _write_members(posing, members)
    with zipfile.ZipFile(unknown) as src:
        source = src.getinfo("bomb.npy")
    info = zipfile.ZipInfo("class0.covariances_.npy", date_time=source.date_time)
    info.compress_type, info.CRC = source.compress_type, source.CRC
    info.compress_size, info.file_size = source.compress_size, source.file_size
    with zipfile.ZipFile(posing, "a") as dst:
        _append_raw(dst, info, _raw_member(unknown, "bomb.npy"))
    out["parameter-named member"] = posing
    return out


def _raw_member(path: Path, name: str) -> bytes:
    """The compressed bytes of a member as stored."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
        with open(path, "rb") as fh:
            fh.seek(info.header_offset)
            local = fh.read(30)
            n, e = struct.unpack("<HH", local[26:30])
            fh.seek(info.header_offset + 30 + n + e)
            return fh.read(info.compress_size)


def _append_raw(zf: zipfile.ZipFile, info: zipfile.ZipInfo, raw: bytes) -> None:
    """Write an already-compressed member into an archive opened for appending."""
    zf.fp.seek(zf.start_dir)
    info.header_offset = zf.start_dir
    zf.fp.write(info.FileHeader(zip64=True))
    zf.fp.write(raw)
    zf.start_dir = zf.fp.tell()
    zf.filelist.append(info)
    zf.NameToInfo[info.filename] = info
    zf._didModify = True


def _declared_size_bomb(models, directory: Path, forge_directory: bool) -> Path:
    """A classifier whose class0.means_ header declares 10^11 elements. The zip directory
    either says what the member really holds, or is forged to agree with the header."""
    path = directory / f"declared-{'forged' if forge_directory else 'plain'}.npz"
    members = _members(models["GMMClassifier"])
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**11 // 4, 4)}
    )
    body = header.getvalue() + members["class0.means_"].tobytes()
    del members["class0.means_"]
    _write_members(path, members)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("class0.means_.npy", body)
    if (
        forge_directory
    ):  # a 10^11-element (800 GB) size in the central directory's zip64 extra field
        data = bytearray(path.read_bytes())
        central = (
            data.rindex(b"class0.means_.npy") - 46
        )  # the directory entry (after the local one)
        assert data[central : central + 4] == b"PK\x01\x02"
        declared = len(header.getvalue()) + 8 * 10**11
        data[central + 24 : central + 28] = (
            b"\xff\xff\xff\xff"  # uncompressed size: see zip64 extra
        )
        name_len, extra_len = struct.unpack("<HH", data[central + 28 : central + 32])
        extra = struct.pack("<HHQ", 1, 8, declared)
        data[central + 30 : central + 32] = struct.pack("<H", extra_len + len(extra))
        insert_at = central + 46 + name_len
        data[insert_at:insert_at] = extra
        # the end-of-central-directory record's directory size grows by the extra field
        end = data.rindex(b"PK\x05\x06")
        (size,) = struct.unpack("<I", data[end + 12 : end + 16])
        data[end + 12 : end + 16] = struct.pack("<I", size + len(extra))
        path.write_bytes(bytes(data))
        with zipfile.ZipFile(path) as zf:
            assert zf.getinfo("class0.means_.npy").file_size == declared
    return path


def test_zip_bombs_are_refused_before_decompression(bombs):
    """A 3 GiB zero member (deflated to a few MB), unknown or named as a parameter, is refused at
    once, from the archive's directory and the member's header."""
    for what, path in bombs.items():
        assert path.stat().st_size < 20 << 20, what
        start = time.perf_counter()
        with pytest.raises(ValueError, match=r"unknown member|decompress|shape") as info:
            GMMClassifier.load(path)
        assert str(path) in str(info.value)
        assert time.perf_counter() - start < 2.0, what
    start = time.perf_counter()  # the command's first look at a model file is bounded alike
    assert _model_files.model_kind(bombs["unknown member"]) is None
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    "forge_directory", [False, True], ids=["honest-directory", "forged-directory"]
)
def test_declared_size_bomb_is_refused(models, tmp_path, forge_directory):
    """A member whose header declares 10^11 elements ends in a named ValueError, not numpy's
    _ArrayMemoryError, whether or not the zip directory agrees with the header."""
    path = _declared_size_bomb(models, tmp_path, forge_directory)
    with pytest.raises(ValueError, match=r"declares|decompress") as info:
        GMMClassifier.load(path)
    assert str(path) in str(info.value)


_MEMORY_SCRIPT = r"""
import json, resource, sys, warnings
warnings.simplefilter("ignore")
sys.path.insert(0, {tests!r})
import test_hostile_files as t
kind, path = sys.argv[1], sys.argv[2]
load = t._loaders(vae=kind in t.TORCH_KINDS)[kind]

def status(field):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":")) / 1024

try:  # Linux: reset the peak (VmHWM) to the current RSS, so the peak of the load itself is measured
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    before, peak = status("VmRSS"), lambda: status("VmHWM")
except OSError:  # elsewhere: the process's peak so far (imports included)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
outcome = t._outcome(load, path)
print(json.dumps({{"outcome": outcome, "peak_growth_mb": peak() - before, "rss_before_mb": before}}))
"""


def _peak_memory(kind: str, path: Path) -> dict:
    script = _MEMORY_SCRIPT.format(tests=str(HERE.parent))
    result = subprocess.run(
        [sys.executable, "-c", script, kind, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tempfile.gettempdir(),  # away from the source tree
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_bombs_stay_within_memory(models, bombs, tmp_path):
    """Measured in a fresh process (the peak RSS during the load): each bomb costs no more than
    the legitimate classifier's load, plus 32 MB (the unbounded loader took 3.1 GiB)."""
    cases = dict(bombs)
    cases["declared 10^11 elements, forged directory"] = _declared_size_bomb(models, tmp_path, True)
    legitimate = _peak_memory("GMMClassifier", models["GMMClassifier"])
    assert legitimate["outcome"] == "loaded", legitimate
    measured = {"legitimate classifier": round(legitimate["peak_growth_mb"], 1)}
    for what, path in cases.items():
        result = _peak_memory("GMMClassifier", path)
        assert result["outcome"] == "error", (what, result)
        assert result["peak_growth_mb"] < legitimate["peak_growth_mb"] + 32, (what, result)
        measured[what] = round(result["peak_growth_mb"], 1)
    print("peak memory growth while loading (MB):", measured)


def test_vae_config_bomb_stays_within_memory(models, tmp_path):
    """A small VAE file whose configuration says hidden_units=100000 (1.4 GiB of weights) is
    refused before any network is allocated; larger values likewise (no torch allocation error).
    Measured against loading the legitimate file (torch's first load costs ~70 MB by itself)."""
    torch = pytest.importorskip("torch")
    legitimate = _peak_memory("ConvVAE", models["ConvVAE"])
    assert legitimate["outcome"] == "loaded", legitimate
    payload = torch.load(models["ConvVAE"], weights_only=True)
    # 60000 is within the bounds but does not match the weights: sized on the meta device, refused
    for units in (100_000, 10**9, 60_000):
        payload["config"]["hidden_units"] = units
        path = tmp_path / f"hidden-{units}.pt"
        torch.save(payload, path)
        result = _peak_memory("ConvVAE", path)
        assert result["outcome"] == "error", result
        assert result["peak_growth_mb"] < legitimate["peak_growth_mb"] + 32, (
            units,
            result,
            legitimate,
        )


# --------------------------------------------------------------------------
# Hand-made hostile .npz files
# --------------------------------------------------------------------------


def _npz_cases(kind: str, path: Path, marker: Path) -> dict[str, dict]:
    """{case: members} of hostile variants of the saved ``kind`` model."""
    members = _members(path)
    meta = _meta(members)
    prefix = "class0." if kind in ("GMMClassifier", "ShiftInvariantClassifier") else ""
    params_key = ("params", "classifier") if kind == "ShiftInvariantClassifier" else ("params",)

    def with_params(**change):
        m = json.loads(json.dumps(meta))
        target = m
        for key in params_key:
            target = target[key]
        target.update(change)
        return _with_meta(members, m)

    def replaced(name, value):
        return members | {prefix + name: value}

    legacy = _legacy(members)  # the older format: the factor checked against the covariances

    def legacy_replaced(name, value):
        return legacy | {prefix + name: value}

    cov = members[prefix + "covariances_"]
    factor = legacy[prefix + "precisions_cholesky_"]
    cases = {
        "unknown numeric member": members | {"extra": np.zeros(3)},
        "object member": members | {"extra": np.array([1, "two"], dtype=object)},
        "pickle that would create a file": members
        | {"extra": np.array([_Marker(marker)], dtype=object)},
        "pickled means_": replaced("means_", np.array([_Marker(marker)], dtype=object)),
        "complex means_": replaced("means_", members[prefix + "means_"].astype(complex)),
        "byte-string means_": replaced("means_", members[prefix + "means_"].astype("S8")),
        "unicode means_": replaced("means_", members[prefix + "means_"].astype("U8")),
        "structured weights_": replaced("weights_", np.zeros(2, dtype=[("a", "<f8")])),
        "NaN means_": replaced(
            "means_",
            np.where(
                np.arange(members[prefix + "means_"].size).reshape(members[prefix + "means_"].shape)
                == 0,
                np.nan,
                members[prefix + "means_"],
            ),
        ),
        "inf covariances_": replaced("covariances_", cov * np.inf),
        "means_ of the wrong shape": replaced("means_", members[prefix + "means_"][:, :-1]),
        "means_ of rank 3": replaced("means_", members[prefix + "means_"][None]),
        "covariances_ of the wrong shape": replaced("covariances_", cov[..., :1]),
        "factor disagrees with covariances_": legacy_replaced("covariances_", 2.0 * cov),
        "negative-definite covariances_": replaced("covariances_", -cov),
        "negative-definite covariances_, legacy": legacy_replaced("covariances_", -cov),
        "weights_ off the simplex": replaced("weights_", members[prefix + "weights_"] * 0.5),
        "missing covariances_": {k: v for k, v in members.items() if k != prefix + "covariances_"},
        "precisions_cholesky_ without covariances_": {
            k: v for k, v in legacy.items() if k != prefix + "covariances_"
        },
        "NaN precisions_cholesky_": legacy_replaced("precisions_cholesky_", factor * np.nan),
        "negative precisions_cholesky_": legacy_replaced("precisions_cholesky_", -factor),
        "precisions_cholesky_ of the wrong shape": legacy_replaced(
            "precisions_cholesky_", factor[..., :1]
        ),
        "float32 precisions_cholesky_": legacy_replaced(
            "precisions_cholesky_", factor.astype(np.float32)
        ),
        "float32 covariances_ of a float64 model": replaced("covariances_", cov.astype(np.float32)),
        "float16 means_": replaced("means_", members[prefix + "means_"].astype(np.float16)),
        "no header": {k: v for k, v in members.items() if k != "__meta__"},
        "header of bytes": members | {"__meta__": np.array(json.dumps(meta).encode())},
        "header is a list": _with_meta(members, [meta]),
        "header with a huge integer": _with_meta(members, meta | {"format_version": 10**400}),
        "header 1000 levels deep": members
        | {"__meta__": np.array(json.dumps(meta)[:-1] + ', "x": ' + "[" * 1000 + "]" * 1000 + "}")},
        "header of 5 MB": _with_meta(members, meta | {"padding": "x" * (5 << 20)}),
        "header of 5 MB, deflated": _with_meta(members, meta | {"padding": "x" * (5 << 20)}),
        "header kind is a list": _with_meta(members, meta | {"kind": [kind]}),
        "params is a list": _with_meta(members, meta | {"params": [1, 2]}),
        "covariance_type 5": with_params(covariance_type=5),
        "covariance_type inconsistent": with_params(covariance_type="spherical"),
        "reg_covar a list": with_params(reg_covar=[1]),
        "tol infinite": with_params(tol=float("inf")),
        "tol 1e999": {
            k: (np.array(str(v).replace("Infinity", "1e999")) if k == "__meta__" else v)
            for k, v in with_params(tol=float("inf")).items()
        },
        "tol NaN": with_params(tol=float("nan")),
        "unknown header field": _with_meta(members, meta | {"x": 1}),
        "n_threads 10**30": with_params(n_threads=10**30),
        "dtype 5": with_params(dtype=5),
        "max_iter a string": with_params(max_iter="100"),
        "unknown parameter": with_params(bogus=1),
    }
    if kind == "GaussianMixture":
        cases["n_iter_ a string"] = members | {"n_iter_": np.array("abc")}
        cases["n_iter_ infinite"] = members | {"n_iter_": np.array(np.inf)}
        cases["lower_bound_ a vector"] = members | {"lower_bound_": np.zeros(3)}
        cases["converged_ a string"] = members | {"converged_": np.array("yes")}
    if kind in ("GaussianMixture", "PatchDenoiser"):
        cases["n_components inconsistent"] = with_params(n_components=7)
        cases["n_components a string"] = with_params(n_components="2")
    if kind == "PatchDenoiser":
        cases["patch_size a string"] = with_params(patch_size="3")
        cases["patch_size huge"] = with_params(patch_size=10**15)
        cases["clip a string"] = with_params(clip="no")
        cases["epll_betas nested"] = with_params(epll_betas=[[1.0]])
    if prefix:
        cases["duplicated classes_"] = members | {
            "classes_": np.array([members["classes_"][0]] * 2)
        }
        cases["classes_ declares 10^6 classes"] = members | {"classes_": np.arange(10**6)}
        cases["object classes_"] = members | {"classes_": members["classes_"].astype(object)}
        cases["classes_ of 10^5-character labels"] = members | {
            "classes_": np.array(["a", "b"], dtype="U100000")
        }
        cases["n_components_ inconsistent"] = members | {
            "n_components_": members["n_components_"] + 1
        }
        cases["class_log_prior_ of text"] = members | {"class_log_prior_": np.array(["a", "b"])}
        cases["members of a third class"] = members | {
            f"class2.{n}": members[f"class0.{n}"] for n in ("weights_", "means_", "covariances_")
        }
        cases["members of a third class, legacy"] = legacy | {
            f"class2.{n}": legacy[f"class0.{n}"]
            for n in ("weights_", "means_", "covariances_", "precisions_cholesky_")
        }
    if kind == "ShiftInvariantClassifier":
        m = json.loads(json.dumps(meta))
        m["params"]["image_shape"] = 9
        cases["image_shape an int"] = _with_meta(members, m)
        m = json.loads(json.dumps(meta))
        m["params"]["shifts"] = [[10**15, 0]]
        cases["shift out of range"] = _with_meta(members, m)
        m = json.loads(json.dumps(meta))
        m["params"]["classifier"] = "x"
        cases["classifier params a string"] = _with_meta(members, m)
    if kind == "GaussianMixture" and cov.ndim == 3:
        asym = cov.copy()
        asym[0, 0, 1] += 0.5
        cases["non-symmetric covariances_"] = replaced("covariances_", asym)
        cases["non-symmetric covariances_, legacy"] = legacy_replaced("covariances_", asym)
        lower = factor.copy()
        lower[0, 1, 0] = 0.25
        cases["factor not upper-triangular"] = legacy_replaced("precisions_cholesky_", lower)
    return cases


class _Marker:
    """Unpickling this creates the marker file: proof that a pickle ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_hostile_npz_files(models, loaders, tmp_path):
    """Every hand-made variant of every .npz kind gives a ValueError naming the file; no pickle runs."""
    marker = tmp_path / "pickle-ran"
    outcomes = {}
    failures = []
    for kind in NPZ_KINDS:
        for case, members in _npz_cases(kind, models[kind], marker).items():
            path = _write_members(tmp_path / f"{kind}.npz", members, compress="deflated" in case)
            outcome = _outcome(loaders[kind], path)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome != "error":
                failures.append(f"{kind}, {case}: {outcome}")
            assert not marker.exists(), f"{kind}, {case}: a pickle was executed"
    assert failures == [], "\n".join(failures)
    print("hand-made .npz cases:", outcomes)


def test_faithful_copies_still_load(models, loaders, tmp_path):
    """The checks do not refuse legitimate files: a model re-saved member by member, compressed
    (np.savez_compressed), loads and equals the original; so does its copy in the older format
    (precisions_cholesky_ beside covariances_), compressed or not."""
    for kind in NPZ_KINDS:
        path = _write_members(tmp_path / f"{kind}.npz", _members(models[kind]), compress=True)
        assert _outcome(loaders[kind], path, loaders[kind](models[kind]), kind) == "same", kind
        for compress in (False, True):
            legacy = _legacy(_members(models[kind]))
            assert sum(name.endswith("precisions_cholesky_") for name in legacy) >= 1, kind
            path = _write_members(tmp_path / f"{kind}-legacy.npz", legacy, compress=compress)
            outcome = _outcome(loaders[kind], path, loaders[kind](models[kind]), kind)
            assert outcome == "same", (kind, compress, outcome)


def test_infinite_clip_bound_round_trips(tmp_path):
    """Infinities are valid in some parameters (a one-sided clip): saved and read back, not refused."""
    rng = np.random.RandomState(0)
    model = PatchDenoiser(3, 2, max_iter=3, random_state=0, n_threads=1, clip=(0.0, np.inf)).fit(
        rng.rand(3, 8, 8)
    )
    model.save(tmp_path / "d.npz")
    assert PatchDenoiser.load(tmp_path / "d.npz").clip == (0.0, np.inf)
    with pytest.raises(ValueError, match="NaN"):
        PatchDenoiser(3, 2, max_iter=3, random_state=0, n_threads=1, clip=(0.0, np.nan)).fit(
            rng.rand(3, 8, 8)
        ).save(tmp_path / "nan.npz")
    assert not (tmp_path / "nan.npz").exists()


def test_symmetric_rounding_and_tied_models_load(tmp_path):
    """Covariances that are symmetric only to rounding, and every covariance type, load: a
    float64 model as it was, a float32 one as its float32 rounding (what its file holds, see
    GaussianMixture.save: its factor and means), exactly; and both as they were from a file of
    the older format."""
    rng = np.random.RandomState(3)
    X = rng.randn(200, 6) @ rng.randn(6, 6)
    for ct in ("full", "tied", "diag", "spherical"):
        for dtype in (np.float64, np.float32):
            gm = GaussianMixture(
                3, covariance_type=ct, dtype=dtype, random_state=0, n_threads=1
            ).fit(X)
            gm.save(tmp_path / "m.npz")
            loaded = GaussianMixture.load(tmp_path / "m.npz")
            expected = copy.deepcopy(gm)
            if dtype is np.float32:
                expected.means_ = gm.means_.astype(np.float32).astype(np.float64)
                factor = gm.precisions_cholesky_.astype(np.float32).astype(np.float64)
                expected.precisions_cholesky_ = factor
                expected.covariances_ = _gaussian.covariances_from_precision_cholesky(factor, ct)
            np.testing.assert_array_equal(loaded.score_samples(X), expected.score_samples(X))
            _write_members(tmp_path / "legacy.npz", _legacy(_members(tmp_path / "m.npz")))
            if dtype is np.float32:  # a legacy file of the float32 model itself
                members = _members(tmp_path / "legacy.npz")
                for name in ("means_", "covariances_", "precisions_cholesky_"):
                    members[name] = getattr(gm, name)
                _write_members(tmp_path / "legacy.npz", members)
            legacy = GaussianMixture.load(tmp_path / "legacy.npz")
            np.testing.assert_array_equal(legacy.score_samples(X), gm.score_samples(X))


@pytest.mark.parametrize("reg_covar", [1e-4, 1e-6])
def test_ill_conditioned_models_load(tmp_path, reg_covar):
    """Factors and covariances that agree only to rounding (cond ~ 1e12 to 1e14) are not refused."""
    rng = np.random.RandomState(0)
    X = rng.randn(600, 10) @ rng.randn(10, 60) * 1e3  # rank 10 in 60 dimensions
    gm = GaussianMixture(2, reg_covar=reg_covar, random_state=0, n_threads=1).fit(X)
    assert np.linalg.cond(gm.covariances_[0]) > 1e11
    gm.save(tmp_path / "m.npz")
    members = _members(tmp_path / "m.npz")
    assert "precisions_cholesky_" not in members  # derived on load: nothing to disagree with
    np.testing.assert_array_equal(
        GaussianMixture.load(tmp_path / "m.npz").precisions_cholesky_, gm.precisions_cholesky_
    )
    # the older format, both members: the agreement check must tolerate this rounding
    _write_members(tmp_path / "m.npz", members | {"precisions_cholesky_": gm.precisions_cholesky_})
    for _ in range(5):  # fresh probe vectors at each load
        np.testing.assert_array_equal(GaussianMixture.load(tmp_path / "m.npz").means_, gm.means_)


def test_archive_of_too_many_members_is_refused(tmp_path, loaders):
    """70000 empty members: refused from the end-of-directory record, before ZipFile builds them."""
    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(70_000):
            zf.writestr(f"m{i}.npy", b"")
    for kind, load in loaders.items():
        with pytest.raises(ValueError, match="members") as info:
            load(path)
        assert str(path) in str(info.value), kind


def test_total_size_cap(models, loaders, monkeypatch):
    """Arrays declaring more than MAX_TOTAL_BYTES in all are refused from their headers (the cap
    lowered here to below a real model's size; 8 GiB otherwise)."""
    monkeypatch.setattr(_model_files, "MAX_TOTAL_BYTES", 1000)
    for kind in NPZ_KINDS:
        with pytest.raises(ValueError, match="limit of a model file") as info:
            loaders[kind](models[kind])
        assert str(models[kind]) in str(info.value)


def test_missing_and_directory_paths(tmp_path, loaders):
    for kind, load in loaders.items():
        with pytest.raises(FileNotFoundError, match="no such"):
            load(tmp_path / "missing")
        with pytest.raises(ValueError, match="directory") as info:
            load(tmp_path)
        assert str(tmp_path) in str(info.value), kind


# --------------------------------------------------------------------------
# Hostile VAE files
# --------------------------------------------------------------------------


def _torch_cases(kind: str, path: Path, marker: Path, torch) -> dict:
    """{case: payload or raw bytes} of hostile variants of a saved VAE model."""
    payload = torch.load(path, weights_only=True)
    config_key = "config" if kind == "ConvVAE" else "vae_config"

    def changed(fn):
        p = torch.load(path, weights_only=True)
        fn(p)
        return p

    first = next(iter(payload["state_dict"]))
    cases = {
        "hidden_units 100000": changed(lambda p: p[config_key].update(hidden_units=100_000)),
        "latent_dim 10**9": changed(lambda p: p[config_key].update(latent_dim=10**9)),
        "latent_dim a float": changed(lambda p: p[config_key].update(latent_dim=2.0)),
        "1000 convolutions": changed(lambda p: p[config_key].update(channels=[4] * 1000)),
        "channels 10**6": changed(lambda p: p[config_key].update(channels=[10**6])),
        "channels a string": changed(lambda p: p[config_key].update(channels="abc")),
        "strides 3": changed(lambda p: p[config_key].update(strides=[3])),
        "dropout 5": changed(lambda p: p[config_key].update(dropout=5.0)),
        "image 10**6 x 10**6": changed(lambda p: p.update(image_shape=[10**6, 10**6])),
        "image_shape a tensor": changed(lambda p: p.update(image_shape=torch.zeros(2))),
        "config with int keys": changed(lambda p: p.update({config_key: {1: 2}})),
        "config a list": changed(lambda p: p.update({config_key: [1]})),
        "weights of the wrong shape": changed(
            lambda p: p["state_dict"].update({first: torch.zeros(3, 3)})
        ),
        "integer weights": changed(
            lambda p: p["state_dict"].update({first: p["state_dict"][first].to(torch.int64)})
        ),
        "complex weights": changed(
            lambda p: p["state_dict"].update({first: p["state_dict"][first].to(torch.complex64)})
        ),
        "NaN weights": changed(lambda p: p["state_dict"][first].fill_(float("nan"))),
        "extra weights": changed(lambda p: p["state_dict"].update({"extra": torch.zeros(10)})),
        "weights under an int key": changed(lambda p: p["state_dict"].update({7: torch.zeros(10)})),
        "fitted of the wrong type": changed(lambda p: p.update(fitted={"best_epoch_": "one"})),
        "deeply nested history": changed(lambda p: p.update(history={"a": [[[[1.0]]]]})),
        "pickle that would create a file": changed(lambda p: p.update(evil=_Marker(marker))),
        "format_version a string": changed(lambda p: p.update(format_version="1")),
    }
    if kind == "VaDE":
        cases["n_clusters 10**9"] = changed(lambda p: p["config"].update(n_clusters=10**9))
        cases["n_clusters a string"] = changed(lambda p: p["config"].update(n_clusters="3"))
        cases["prior of the wrong shape"] = changed(
            lambda p: p["state_dict"].update({"prior.means": torch.zeros(5)})
        )
        cases["negative variances"] = changed(lambda p: p["state_dict"]["prior.variances"].neg_())
    buffer = io.BytesIO()
    pickle.dump({"format": "gmmfast-torch", "evil": _Marker(marker)}, buffer)
    cases["raw pickle"] = buffer.getvalue()
    return cases


def test_hostile_vae_files(models, loaders, tmp_path):
    """Absurd configurations, mismatched or non-real weights, pickles: a named ValueError each."""
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pickle-ran"
    outcomes, failures = {}, []
    for kind in TORCH_KINDS:
        for case, payload in _torch_cases(kind, models[kind], marker, torch).items():
            path = tmp_path / f"{kind}.pt"
            if isinstance(payload, bytes):
                path.write_bytes(payload)
            else:
                try:
                    torch.save(payload, path)
                except Exception as exc:  # noqa: BLE001 - a payload torch cannot even write
                    pytest.fail(f"{kind}, {case}: could not build the case ({exc})")
            outcome = _outcome(loaders[kind], path)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            if outcome != "error":
                failures.append(f"{kind}, {case}: {outcome}")
            assert not marker.exists(), f"{kind}, {case}: a pickle was executed"
    assert failures == []
    print("hand-made VAE cases:", outcomes)


def test_vae_zip_bomb_is_refused(models, tmp_path):
    """A VAE file with a deflated member that expands a thousandfold is refused before torch reads it."""
    pytest.importorskip("torch")
    path = tmp_path / "bomb.pt"
    path.write_bytes(models["ConvVAE"].read_bytes())
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("vae/data/99", bytes(64 << 20))
    with pytest.raises(ValueError, match="decompress") as info:
        _loaders()["ConvVAE"](path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------
# The command: one line and status 2, never a traceback
# --------------------------------------------------------------------------


def test_command_reports_hostile_models_in_one_line(models, bombs, tmp_path, capsys):
    from gmmfast.cli import main

    test = tmp_path / "test.npz"
    np.savez(test, x_test=np.zeros((2, 4)), y_test=np.array([3, 7]))
    members = _members(models["GMMClassifier"])
    meta = _meta(members)
    hostile = {
        "bomb": bombs["unknown member"],
        "declared": _declared_size_bomb(models, tmp_path, True),
        "types": _write_members(
            tmp_path / "types.npz", _with_meta(members, meta | {"params": {"tol": [1]}})
        ),
        "huge": _write_members(
            tmp_path / "huge.npz", _with_meta(members, meta | {"params": {"n_threads": 10**300}})
        ),
        "deep": _write_members(
            tmp_path / "deep.npz", members | {"__meta__": np.array("[" * 100000 + "]" * 100000)}
        ),
        "duplicated": _write_members(
            tmp_path / "dup.npz", members | {"classes_": np.array([3, 3])}
        ),
    }
    for what, path in hostile.items():
        code = main(["classify", "--model", str(path), "--test", str(test)])
        err = capsys.readouterr().err
        assert code == 2, (what, err)
        assert err.startswith("gmmfast: error: ") and err.count("\n") == 1 and str(path) in err, (
            what,
            err,
        )
    if "ConvVAE" not in models:
        return
    import torch

    payload = torch.load(models["ConvVAE"], weights_only=True)
    payload["config"]["hidden_units"] = 100_000
    torch.save(payload, tmp_path / "vae.pt")
    images = tmp_path / "images.npz"
    np.savez(images, x_test=np.zeros((2, 8, 8), dtype=np.float32))
    code = main(
        [
            "vae",
            "reconstruct",
            "--model",
            str(tmp_path / "vae.pt"),
            "--images",
            str(images),
            "--out",
            str(tmp_path / "r.npz"),
        ]
    )
    err = capsys.readouterr().err
    assert (
        code == 2
        and err.startswith("gmmfast: error: ")
        and "hidden_units" in err
        and err.count("\n") == 1
    )
    assert not (tmp_path / "r.npz").exists()


# --------------------------------------------------------------------------
# Subprocess entry point
# --------------------------------------------------------------------------

if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    if sys.argv[1] == "fuzz":
        try:
            import torch

            torch.set_num_threads(1)
        except ImportError:
            pass
        print(json.dumps(_fuzz(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))))


# --------------------------------------------------- save checks what load checks
@pytest.mark.parametrize(
    "param, value",
    [
        ("averaging", -1),
        ("init_params", "bogus"),
        ("learning_decay", 2.0),
        ("max_iter", 2.5),
        ("n_init", 0),
        ("n_threads", 0),
        ("random_state", -1),
        ("reg_covar", float("inf")),
        ("resp_floor", 1.0),
        ("tol", None),
        ("verbose", "loud"),
        ("warm_start", "yes"),
        ("dtype", "bogus"),
    ],
)
def test_save_refuses_parameters_that_load_would_refuse(tmp_path, param, value):
    """set_params after fit, then save: refused naming the parameter, nothing written."""
    X = np.random.RandomState(0).randn(60, 2)
    model = GaussianMixture(2, random_state=0).fit(X)
    model.set_params(**{param: value})
    path = tmp_path / "m.npz"
    path.write_bytes(b"precious")
    with pytest.raises(ValueError, match=param):
        model.save(path)
    assert path.read_bytes() == b"precious"


def test_load_refuses_an_int_path_without_closing_that_descriptor():
    fd = os.open(os.devnull, os.O_RDONLY)
    try:
        with pytest.raises(TypeError, match="path"):
            GaussianMixture.load(fd)
        os.fstat(fd)  # still open: zipfile would have closed it
    finally:
        os.close(fd)


def test_save_into_a_missing_directory_names_the_path(tmp_path):
    model = GaussianMixture(1).fit(np.random.RandomState(0).randn(20, 2))
    target = tmp_path / "no" / "m.npz"
    with pytest.raises(FileNotFoundError, match="no such directory") as info:
        model.save(target)
    assert str(target) in str(info.value) and ".tmp" not in str(info.value)


# ------------------------------------------- a classifier's stream and its averaging
def _classifier_stream(tmp_path, averaging, *, after_fit=False) -> tuple[GMMClassifier, Path]:
    rng = np.random.RandomState(0)
    X = rng.randn(240, 3)
    y = (X[:, 0] > 0).astype(int)
    clf = GMMClassifier(2, averaging=averaging, random_state=0, n_threads=1)
    if after_fit:
        clf.fit(X, y)
    for batch in range(3):
        rows = slice(80 * batch, 80 * (batch + 1))
        clf.partial_fit(X[rows], y[rows], classes=[0, 1])
    clf.save(tmp_path / "stream.npz")
    return clf, tmp_path / "stream.npz"


@pytest.mark.parametrize("after_fit", [False, True])
@pytest.mark.parametrize("saved, header", [(1, None), (2, None), (2, 3), (1, 5), (2, 1)])
def test_classifier_stream_is_checked_with_the_classifiers_averaging(
    tmp_path, saved, header, after_fit
):
    """Each class's stream state is validated with the header's averaging, as
    GaussianMixture.load validates its own: an averaged state under another
    averaging is refused, naming the file and the averaging."""
    _, path = _classifier_stream(tmp_path, saved, after_fit=after_fit)
    members = _members(path)
    meta = _meta(members)
    meta["params"]["averaging"] = header
    tampered = _write_members(tmp_path / "tampered.npz", _with_meta(members, meta))
    if after_fit and (saved, header) == (2, 1):
        # After fit, step 1 is the fitted parameters (never averaged): averaging 1 and 2
        # average the same steps, so the file is the same stream under either.
        assert GMMClassifier.load(tampered).averaging == 1
        return
    with pytest.raises(ValueError, match=r"tampered\.npz.*averag"):
        GMMClassifier.load(tampered)


@pytest.mark.parametrize("averaging", [None, 1, 2, 3])
@pytest.mark.parametrize("after_fit", [False, True])
def test_genuine_averaged_streams_load_and_resume(tmp_path, averaging, after_fit):
    """A stream that continued a fit saves fewer averaged steps than its step count
    (step 1 is the fit): it loads, and resumes exactly as the original goes on."""
    original, path = _classifier_stream(tmp_path, averaging, after_fit=after_fit)
    loaded = GMMClassifier.load(path)
    X = np.random.RandomState(1).randn(60, 3)
    y = (X[:, 0] > 0).astype(int)
    for clf in (loaded, original):
        clf.partial_fit(X, y)
    np.testing.assert_array_equal(loaded.predict_proba(X), original.predict_proba(X))
    gm = GaussianMixture(2, averaging=averaging, random_state=0, n_threads=1)
    if after_fit:
        gm.fit(X)
    for _ in range(3):
        gm.partial_fit(X)
    gm.save(tmp_path / "gm.npz")
    assert GaussianMixture.load(tmp_path / "gm.npz").n_batches_seen_ == 3
