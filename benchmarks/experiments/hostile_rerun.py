#!/usr/bin/env python
"""Hostile re-run of issue 25's surfaces (Dask, streams, clustering API, VAE,
image, the gmmfast command).

Usage (from the repository, with gmmfast and its test extras installed):
    python benchmarks/experiments/hostile_rerun.py --quiet [--only GROUP[,GROUP]] [-k SUBSTR]

The rules themselves are tested by tests/test_hostile*.py; this harness tries
many more inputs at once and classifies every outcome (OK, CRASH, HANG,
TRACEBACK, DATA LOSS, MEMORY BOMB, SILENT WRONG, UNCLEAR ERROR). Its SILENT
WRONG class is strict: it also counts documented behaviour (thread counts
clamped, 0-255 float files scaled by the command, max_iter=0, dtype=None as
NumPy's float64); read each line.

The parent process runs the cases in a worker subprocess, one JSON line per
case; a worker that dies mid-case marks it CRASH, one that overruns marks it
HANG, and a fresh worker resumes at the next case.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import tracemalloc
import warnings

import numpy as np

CASE_TIMEOUT = 90  # seconds per case
MEM_LIMIT = 6 * 2**30  # address space of a worker's allocations (RLIMIT_DATA)
BOMB_BYTES = 512 * 2**20  # peak traced allocation from a tiny input = memory bomb
CASES: list[tuple[str, str, object]] = []  # (group, id, fn)

OK, CRASH, HANG, TRACEBACK, DATA_LOSS, BOMB, WRONG, UNCLEAR = (
    "OK",
    "CRASH",
    "HANG",
    "TRACEBACK",
    "DATA LOSS",
    "MEMORY BOMB",
    "SILENT WRONG",
    "UNCLEAR ERROR",
)


def case(group, cid, fn):
    CASES.append((group, f"{group}:{cid}", fn))


class Verdict(Exception):
    def __init__(self, outcome, detail=""):
        super().__init__(detail)
        self.outcome, self.detail = outcome, detail


def _short(e):
    s = f"{type(e).__name__}: {e}"
    return s.replace("\n", " | ")[:300]


def judge_error(e, names):
    """A raised exception: OK when a ValueError/TypeError names one of names."""
    if isinstance(e, Verdict):
        return e.outcome, e.detail
    if isinstance(e, MemoryError):
        return BOMB, _short(e)
    msg = str(e).lower()
    kinds = (ValueError, TypeError)
    try:
        from gmmfast.utils._estimator import NotFittedError

        kinds = kinds + (NotFittedError,)
    except Exception:
        pass
    if isinstance(e, OSError) and not isinstance(
        e,
        (
            FileNotFoundError,
            IsADirectoryError,
            NotADirectoryError,
            PermissionError,
            FileExistsError,
        ),
    ):
        kinds = kinds
    elif isinstance(e, OSError):
        kinds = kinds + (OSError,)
    if isinstance(e, RuntimeError) and ("client was closed" in msg or msg == "user block failed"):
        return OK, _short(
            e
        )  # the closed client said plainly; the user's own block error passed through
    if isinstance(e, kinds) and (not names or any(n.lower() in msg for n in names)):
        return OK, _short(e)
    return UNCLEAR, _short(e) + f"  [wanted a ValueError/TypeError naming {names}]"


def expect_error(fn, *names, accept=None):
    """fn must raise naming one of names, or (with accept) return a verified result."""
    try:
        r = fn()
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        return judge_error(e, names)
    if accept is None:
        return WRONG, f"accepted without error: {str(r)[:200]}"
    ok = accept(r)
    if ok is True:
        return OK, "accepted, result verified"
    return WRONG, f"accepted, result wrong: {ok}"


def expect_result(fn, check, *names):
    """fn may raise naming names, or must return a result passing check."""
    return expect_error(fn, *names, accept=check)


# ----------------------------------------------------------------- fixtures
RNG = np.random.RandomState(0)
X = np.vstack([RNG.randn(150, 3), RNG.randn(150, 3) + 5.0])
Y = np.repeat([0, 1], 150)
TMP = None


def tmpdir():
    global TMP
    if TMP is None:
        TMP = tempfile.mkdtemp(prefix="hostile_")
    return TMP


def GM(**kw):
    from gmmfast import GaussianMixture

    kw.setdefault("random_state", 0)
    kw.setdefault("n_components", 2)
    return GaussianMixture(**kw)


def GC(**kw):
    from gmmfast import GMMClassifier

    kw.setdefault("random_state", 0)
    return GMMClassifier(**kw)


def sorted_means(m):
    return m.means_[np.lexsort(m.means_.T[::-1])]


def same_fit(ref_X, tol=1e-6, **kw):
    """A checker: the fitted model equals the fit on ref_X (float64, C order)."""
    ref = GM(**kw).fit(np.ascontiguousarray(ref_X, dtype=np.float64))

    def check(m):
        a, b = sorted_means(m), sorted_means(ref)
        if a.shape != b.shape:
            return f"means shape {a.shape} vs {b.shape}"
        if not np.allclose(a, b, rtol=tol, atol=tol):
            return f"means differ by {np.abs(a - b).max():.3g}"
        return True

    return check


def finite_model(m):
    for k in ("weights_", "means_", "covariances_"):
        v = np.asarray(getattr(m, k))
        if not np.all(np.isfinite(v)):
            return f"{k} not finite"
    if not np.isclose(m.weights_.sum(), 1):
        return "weights do not sum to 1"
    return True


def state(m):
    d = {}
    for k, v in vars(m).items():
        if k.endswith("_") and not k.startswith("_"):
            d[k] = np.array(v, copy=True) if isinstance(v, np.ndarray) else v
    return d


def same_state(a, b):
    if a.keys() != b.keys():
        return f"attributes {sorted(set(a) ^ set(b))} changed"
    for k in a:
        va, vb = a[k], b[k]
        if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
            if not (np.shape(va) == np.shape(vb) and np.array_equal(va, vb, equal_nan=True)):
                return f"{k} changed"
        else:
            try:
                if va != vb and va is not vb:
                    return f"{k} changed"
            except Exception:
                pass
    return True


# ================================================================ estimators
def est_cases():
    X.copy()
    bad_X = {
        "all_nan": np.full((10, 3), np.nan),
        "inf": np.where(np.arange(900).reshape(300, 3) == 5, np.inf, X),
        "-inf": np.where(np.arange(900).reshape(300, 3) == 5, -np.inf, X),
        "complex": X.astype(complex) + 1j,
        "str": X.astype(str),
        "object_str": np.array([["a", 1, 2]] * 300, dtype=object),
        "datetime": np.zeros((300, 3), dtype="datetime64[s]"),
        "timedelta": np.zeros((300, 3), dtype="timedelta64[s]"),
        "0d": np.float64(3.0),
        "1d": X[:, 0].copy(),
        "3d": X.reshape(300, 3, 1),
        "empty_rows": np.zeros((0, 3)),
        "empty_cols": np.zeros((300, 0)),
        "one_row": X[:1],
        "two_rows": X[:2],
        "ragged": [[1.0, 2.0], [3.0]] * 20,
        "none": None,
        "string": "abc",
        "dict": {"a": 1},
        "set": {1, 2, 3},
        "structured": np.zeros(300, dtype=[("a", float), ("b", float), ("c", float)]),
        "nested_obj": np.array([[np.array([1.0, 2.0]), 1.0, 2.0]] * 300, dtype=object),
        "sparse_like": type("Sparse", (), {"tocsr": lambda s: s, "shape": (300, 3)})(),
        "void": np.zeros((300, 3), dtype="V8"),
        "bytes": X.astype("S8"),
        "f_huge_over": np.full((300, 3), 1e308) * np.array([1, -1, 1]),
        "fewer_distinct_than_k": np.ones((300, 3)),
    }
    for name, bx in bad_X.items():
        for est in ("GM", "GC"):

            def f(bx=bx, est=est):
                if est == "GM":
                    return GM().fit(bx)
                n = len(bx) if hasattr(bx, "__len__") and not isinstance(bx, (str, dict)) else 10
                y = np.arange(n) % 2 if isinstance(n, int) else Y
                return GC(n_components=1).fit(bx, y)

            if name in ("fewer_distinct_than_k", "f_huge_over"):
                case(
                    "est",
                    f"{est}.fit.{name}",
                    lambda f=f: expect_result(
                        f,
                        finite_model_or_clf,
                        "X",
                        "distinct",
                        "n_components",
                        "finite",
                        "range",
                        "large",
                        "overflow",
                    ),
                )
            else:
                case(
                    "est",
                    f"{est}.fit.{name}",
                    lambda f=f: expect_error(
                        f,
                        "X",
                        "n_samples",
                        "n_features",
                        "dtype",
                        "finite",
                        "infinit",
                        "nan",
                        "missing",
                        "class",
                    ),
                )

    # valid but unusual layouts: must equal the contiguous float64 fit (or be refused naming X)
    mm_path = os.path.join(tmpdir(), "mm.dat")
    mm = np.memmap(mm_path, dtype=np.float64, mode="w+", shape=X.shape)
    mm[:] = X
    mm.flush()
    ro = X.copy()
    ro.setflags(write=False)
    odd = {
        "fortran": (np.asfortranarray(X), X),
        "strided": (np.repeat(X, 2, axis=0)[::2], X),
        "colstrided": (np.repeat(X, 2, axis=1)[:, ::2], X),
        "readonly": (ro, X),
        "memmap_r": (np.memmap(mm_path, dtype=np.float64, mode="r", shape=X.shape), X),
        "list": (X.tolist(), X),
        "tuple_rows": (tuple(map(tuple, X)), X),
        "float32": (X.astype(np.float32), X.astype(np.float32).astype(np.float64)),
        "float16": (X.astype(np.float16), X.astype(np.float16).astype(np.float64)),
        "int64": (np.round(X * 10).astype(np.int64), np.round(X * 10)),
        "uint8": (
            np.clip(np.round(X * 10 + 20), 0, 255).astype(np.uint8),
            np.clip(np.round(X * 10 + 20), 0, 255),
        ),
        "object_float": (X.astype(object), X),
        "longdouble": (X.astype(np.longdouble), X),
        "negative_stride": (X[::-1][::-1], X),
        "matrix": (np.asmatrix(X), X),
        "big_offset": (X + 1e8, X + 1e8),
        "tiny_scale": (X * 1e-150, X * 1e-150),
        "denormal": (X * 1e-310, X * 1e-310),
        "huge_scale": (X * 1e150, X * 1e150),
    }
    for name, (bx, ref) in odd.items():
        tol = 1e-6 * (
            np.abs(ref).max()
            if name in ("huge_scale", "big_offset", "tiny_scale", "denormal")
            else 1
        )
        case(
            "est",
            f"GM.fit.{name}",
            lambda bx=bx, ref=ref, tol=tol: expect_result(
                lambda: GM().fit(bx),
                same_fit(ref, tol=max(tol, 1e-320)),
                "X",
                "dtype",
                "scale",
                "range",
            ),
        )
    # inputs never modified
    for name in ("fortran", "readonly", "float32", "list"):

        def f(name=name):
            bx = odd[name][0]
            before = np.array(bx, dtype=np.float64, copy=True)
            GM().fit(bx).predict(bx)
            if not np.array_equal(np.array(bx, dtype=np.float64), before):
                return WRONG, "input modified"
            return OK, "unchanged"

        case("est", f"never_modified.{name}", f)

    # masked arrays: equal to NaN = missing
    def masked(est_method):
        M = np.zeros_like(X, dtype=bool)
        M[::7, 1] = True
        Xm = np.ma.masked_array(X.copy(), mask=M)
        Xm.data[M] = 1e6  # garbage under the mask
        Xn = X.copy()
        Xn[M] = np.nan
        a = GM().fit(Xm)
        b = GM().fit(Xn)
        if not np.allclose(sorted_means(a), sorted_means(b)):
            return WRONG, "masked fit differs from NaN fit"
        if est_method:
            sa, sb = getattr(b, est_method)(Xm), getattr(b, est_method)(Xn)
            if not np.allclose(sa, sb, equal_nan=True):
                return WRONG, f"{est_method} on masked != NaN"
        return OK, "masked == NaN-missing"

    for meth in (None, "score_samples", "predict_proba", "predict"):
        case("est", f"masked.{meth}", lambda meth=meth: _guard(lambda: masked(meth), "mask", "X"))

    # parameters
    bad_params = {
        "n_components": [0, -1, 2.5, True, None, "2", 10**20, 301, float("nan"), [2]],
        "covariance_type": ["FULL", None, "bogus", 1],
        "tol": [-1, float("nan"), "a", None],
        "reg_covar": [-1, float("nan"), float("inf"), "a"],
        "max_iter": [0, -1, 2.5, 10**30, None],
        "n_init": [0, -1, 10**9, 2.5],
        "init_params": ["bogus", None, 3],
        "random_state": [-1, 2**64, "a", 1.5, [1, -2]],
        "weights_init": [[1.0], [-0.5, 1.5], [np.nan, 1], [0.2, 0.2], "ab"],
        "means_init": [np.zeros((3, 3)), np.full((2, 3), np.nan), np.zeros((2, 4)), np.zeros(6)],
        "precisions_init": [
            np.zeros((2, 3, 3)),
            -np.stack([np.eye(3)] * 2),
            np.stack([np.eye(3)] * 3),
            np.full((2, 3, 3), np.nan),
        ],
        "dtype": ["float16", int, complex, "bogus", None, np.int8],
        "n_threads": [0, -(10**9), 2.5, "a", 10**20],
        "resp_floor": [-1, 1, float("nan"), 2],
        "learning_decay": [0, 2, float("nan"), -1],
        "learning_offset": [-1, float("nan"), float("inf")],
        "averaging": [-1, 0, 2.5, "a"],
        "verbose": [-1, "loud"],
        "verbose_interval": [0, -1],
        "warm_start": ["yes", 2],
    }
    for p, vals in bad_params.items():
        for v in vals:
            name = repr(v)[:30]

            def f(p=p, v=v):
                return GM(**{p: v}).fit(X)

            case("est", f"GM.param.{p}={name}", lambda f=f, p=p: expect_error(f, p))

            def g(p=p, v=v):
                m = GM().fit(X)
                state(m)
                try:
                    m.set_params(**{p: v})
                except (ValueError, TypeError) as e:
                    return judge_error(e, [p])
                # predict must still work (fitted state) or refuse naming p
                try:
                    m.predict(X[:5])
                except Exception as e:
                    o, d = judge_error(e, [p])
                    if o != OK:
                        return o, "predict after set_params: " + d
                path = os.path.join(tmpdir(), f"sp_{abs(hash((p, name)))}.npz")
                try:
                    m.save(path)
                except Exception as e:
                    o, d = judge_error(e, [p])
                    return o, "save after set_params: " + d
                try:
                    from gmmfast import GaussianMixture

                    GaussianMixture.load(path)
                except Exception as e:
                    return WRONG, f"save wrote a file load refuses: {_short(e)}"
                return OK, "set_params accepted; saved and reloaded"

            case("est", f"GM.set_params_after_fit.{p}={name}", g)

    # classifier-specific parameters and labels
    clf_bad = {
        "n_components": [0, {0: 1}, {0: 1, 1: 0}, [0], (k for k in (1, 2)), "a"],
        "priors": [[0.5], [-1, 2], [np.nan, 1], [0.3, 0.3], "ab"],
        "selection": ["bogus", None],
        "validation_fraction": [0, 1, -0.1, float("nan")],
        "init_size": [0, -1, 2.5],
    }
    for p, vals in clf_bad.items():
        for v in vals:
            name = repr(v)[:30]
            if "generator" in name:
                # a generator of ints per class: use both values or refuse naming the parameter
                def f(v=v):
                    m = GC(n_components=v).fit(X, Y)
                    ks = (
                        [len(g.weights_) for g in m.estimators_]
                        if hasattr(m, "estimators_")
                        else None
                    )
                    return m, ks

                case(
                    "est",
                    f"GC.param.{p}=generator",
                    lambda f=f, p=p: expect_result(
                        f,
                        lambda r: (
                            True if r[1] in (None, [1, 2]) else f"components per class {r[1]}"
                        ),
                        p,
                    ),
                )
            else:
                case(
                    "est",
                    f"GC.param.{p}={name}",
                    lambda p=p, v=v: expect_error(lambda: GC(**{p: v}).fit(X, Y), p),
                )
    bad_y = {
        "none": None,
        "short": Y[:-1],
        "2d": Y.reshape(-1, 1).repeat(2, 1),
        "nan": np.where(np.arange(300) == 3, np.nan, Y.astype(float)),
        "mixed_obj": np.array([0, "a"] * 150, dtype=object),
        "one_class": np.zeros(300, int),
        "float_labels": Y + 0.5,
        "dict": {0: 1},
        "complex": Y.astype(complex),
        "none_in_obj": np.array([None, 1] * 150, dtype=object),
    }
    for name, by in bad_y.items():
        if name == "float_labels":
            case(
                "est",
                f"GC.y.{name}",
                lambda by=by: expect_result(
                    lambda: GC().fit(X, by),
                    lambda m: True if set(m.classes_) == {0.5, 1.5} else f"classes {m.classes_}",
                    "y",
                ),
            )
        else:
            case(
                "est",
                f"GC.y.{name}",
                lambda by=by: expect_error(lambda: GC().fit(X, by), "y", "class", "label"),
            )

    # methods of a fitted model with bad X
    meths = ["predict", "predict_proba", "score_samples", "score", "bic", "aic"]
    bad_pred = {
        "width": X[:, :2],
        "1d": X[0],
        "3d": X[:5, None],
        "inf": np.full((2, 3), np.inf),
        "str": X[:3].astype(str),
        "complex": X[:3] + 1j,
        "none": None,
    }
    for meth in meths:
        for name, bx in bad_pred.items():
            case(
                "est",
                f"GM.{meth}.{name}",
                lambda meth=meth, bx=bx: expect_error(
                    lambda: getattr(GM().fit(X), meth)(bx),
                    "X",
                    "n_features",
                    "finite",
                    "infinit",
                    "feature",
                ),
            )
        # empty input: empty output (or named error for the scalar reductions)
        if meth in ("predict", "predict_proba", "score_samples"):
            case(
                "est",
                f"GM.{meth}.empty",
                lambda meth=meth: expect_result(
                    lambda: getattr(GM().fit(X), meth)(np.zeros((0, 3))),
                    lambda r: True if len(r) == 0 else f"len {len(r)}",
                    "X",
                    "sample",
                ),
            )
        else:
            case(
                "est",
                f"GM.{meth}.empty",
                lambda meth=meth: expect_error(
                    lambda: getattr(GM().fit(X), meth)(np.zeros((0, 3))), "X", "sample"
                ),
            )
    # unfitted
    for meth in meths + ["sample", "save"]:
        args = (
            (5,)
            if meth == "sample"
            else ((os.path.join(tmpdir(), "u.npz"),) if meth == "save" else (X,))
        )
        case(
            "est",
            f"GM.unfitted.{meth}",
            lambda meth=meth, args=args: expect_error(
                lambda: getattr(GM(), meth)(*args), "fit", "not fitted"
            ),
        )
    for n in (0, -1, 2.5, 10**12, "3", None):
        case(
            "est",
            f"GM.sample.n={n!r}",
            lambda n=n: expect_error(lambda: GM().fit(X).sample(n), "n_samples"),
        )

    # a failed fit leaves the previous fit
    for name in ("inf", "str", "empty_rows", "all_nan"):

        def f(name=name):
            m = GM().fit(X)
            before = state(m)
            try:
                m.fit(bad_X[name])
            except Exception:
                pass
            s = same_state(before, state(m))
            return (OK, "unchanged") if s is True else (WRONG, s)

        case("est", f"failed_fit_keeps_previous.{name}", f)


def finite_model_or_clf(m):
    return finite_model(m) if hasattr(m, "means_") else True


def _guard(fn, *names):
    try:
        return fn()
    except BaseException as e:  # noqa: BLE001
        if isinstance(e, KeyboardInterrupt):
            raise
        return judge_error(e, names)


# ================================================================ streams
def stream_cases():
    from gmmfast import GaussianMixture, GMMClassifier

    def pf_all_nan(est):
        b = np.full((10, 3), np.nan)
        if est == "GM":
            return GM().partial_fit(b)
        return GC().partial_fit(b, np.arange(10) % 2, classes=[0, 1])

    for est in ("GM", "GC"):
        case(
            "stream",
            f"{est}.partial_fit.all_nan_first",
            lambda est=est: expect_error(lambda: pf_all_nan(est), "X", "nan", "missing", "observ"),
        )

    def pf_then(bad, est="GM", names=("X",)):
        def run():
            if est == "GM":
                m = GM(averaging=3).partial_fit(X[:100]).partial_fit(X[100:200])
            else:
                m = GC(averaging=3).partial_fit(X[::2], Y[::2], classes=[0, 1])
            before = state(m)
            try:
                if est == "GM":
                    m.partial_fit(bad)
                else:
                    m.partial_fit(bad, np.arange(len(bad)) % 2)
            except BaseException as e:  # noqa: BLE001
                if isinstance(e, KeyboardInterrupt):
                    raise
                o, d = judge_error(e, names)
                s = same_state(before, state(m))
                if s is not True:
                    return WRONG, f"failed partial_fit changed the model: {s}"
                return o, d
            return WRONG, "bad batch accepted"

        return run

    later = {
        "all_nan": np.full((10, 3), np.nan),
        "inf": np.full((10, 3), np.inf),
        "width": X[:10, :2],
        "1d": X[0],
        "str": X[:10].astype(str),
        "complex": X[:10] + 1j,
        "empty": np.zeros((0, 3)),
        "none": None,
        "object_str": np.array([["a", 1, 2]] * 10, dtype=object),
    }
    for est in ("GM", "GC"):
        for name, b in later.items():
            if name == "empty":
                # an empty batch: a no-op or a named error; never a change
                def f(b=b, est=est):
                    m = (
                        GM().partial_fit(X[:100])
                        if est == "GM"
                        else GC().partial_fit(X[::2], Y[::2], classes=[0, 1])
                    )
                    before = state(m)
                    try:
                        m.partial_fit(b) if est == "GM" else m.partial_fit(b, np.zeros(0, int))
                    except Exception as e:
                        return judge_error(e, ["X", "sample", "empty"])
                    s = same_state(before, state(m))
                    return (
                        (OK, "empty batch: no-op")
                        if s is True
                        else (WRONG, f"empty batch changed model: {s}")
                    )

                case("stream", f"{est}.partial_fit_later.empty", f)
            else:
                case(
                    "stream",
                    f"{est}.partial_fit_later.{name}",
                    pf_then(
                        b,
                        est,
                        (
                            "X",
                            "n_features",
                            "finite",
                            "infinit",
                            "nan",
                            "observ",
                            "feature",
                            "dtype",
                            "missing",
                        ),
                    ),
                )

    # mixed NaN rows in a batch: missing data, result finite
    def nan_rows():
        b = X.copy()
        b[::5, 0] = np.nan
        m = GM().partial_fit(b)
        return m

    case("stream", "GM.partial_fit.some_nan", lambda: expect_result(nan_rows, finite_model, "X"))

    # first batch smaller than n_components
    case(
        "stream",
        "GM.partial_fit.one_row_first",
        lambda: expect_error(
            lambda: GM().partial_fit(X[:1]), "n_components", "n_samples", "sample"
        ),
    )

    def one_row_with_inits():
        m = GM(
            weights_init=[0.5, 0.5],
            means_init=[[0, 0, 0], [5, 5, 5]],
            precisions_init=np.stack([np.eye(3)] * 2),
        )
        m.partial_fit(X[:1])
        return m

    case(
        "stream",
        "GM.partial_fit.one_row_all_inits",
        lambda: expect_result(one_row_with_inits, finite_model, "X"),
    )
    # dtype change between batches
    case(
        "stream",
        "GM.partial_fit.float32_after_float64",
        lambda: expect_result(
            lambda: GM().partial_fit(X[:150]).partial_fit(X[150:].astype(np.float32)),
            finite_model,
            "dtype",
        ),
    )
    # classifier label misuse
    clf_misuse = {
        "no_classes_first": lambda: GC().partial_fit(X[:10], Y[:10]),
        "new_class_later": lambda: (
            GC().partial_fit(X[::2], Y[::2], classes=[0, 1]).partial_fit(X[:5], np.full(5, 7))
        ),
        "classes_dupes": lambda: GC().partial_fit(X[::2], Y[::2], classes=[0, 0, 1]),
        "classes_generator": lambda: GC().partial_fit(X[::2], Y[::2], classes=(c for c in (0, 1))),
        "classes_change": lambda: (
            GC()
            .partial_fit(X[::2], Y[::2], classes=[0, 1])
            .partial_fit(X[::2], Y[::2], classes=[0, 1, 2])
        ),
        "y_short": lambda: GC().partial_fit(X[::2], Y[::2][:-1], classes=[0, 1]),
        "y_nan": lambda: GC().partial_fit(X[:4], np.array([0, 1, np.nan, 1]), classes=[0, 1]),
        "classes_none_elem": lambda: GC().partial_fit(
            X[:4], np.array([0, 1, 0, 1]), classes=[0, None]
        ),
        "classes_empty": lambda: GC().partial_fit(X[:4], np.array([0, 1, 0, 1]), classes=[]),
    }
    for name, fn in clf_misuse.items():
        if name == "classes_generator":
            case(
                "stream",
                f"GC.partial_fit.{name}",
                lambda fn=fn: expect_result(
                    fn,
                    lambda m: True if list(m.classes_) == [0, 1] else f"classes {m.classes_}",
                    "classes",
                ),
            )
        else:
            acc = (
                (lambda m: True if list(m.classes_) == [0, 1] else f"classes {m.classes_}")
                if name == "classes_dupes"
                else None
            )
            case(
                "stream",
                f"GC.partial_fit.{name}",
                lambda fn=fn, acc=acc: expect_error(
                    fn, "classes", "y", "class", "label", accept=acc
                ),
            )
    # observed argument misuse
    obs_bad = {
        "shape": np.ones((10, 2), bool),
        "float": np.full((10, 3), 0.5),
        "all_false": np.zeros((10, 3), bool),
        "str": np.full((10, 3), "a"),
        "none_obj": np.array([[None] * 3] * 10, dtype=object),
    }
    for name, ob in obs_bad.items():
        case(
            "stream",
            f"GM.partial_fit.observed.{name}",
            lambda ob=ob: expect_error(lambda: GM().partial_fit(X[:10], observed=ob), "observed"),
        )

    # set_params to bad values after a partial_fit, then partial_fit again
    for p, v in [
        ("learning_decay", 5.0),
        ("learning_decay", float("nan")),
        ("averaging", -3),
        ("n_components", 5),
        ("covariance_type", "diag"),
        ("reg_covar", -1.0),
        ("learning_offset", -10.0),
        ("dtype", np.float32),
        ("resp_floor", 2.0),
    ]:

        def f(p=p, v=v):
            m = GM(averaging=2).partial_fit(X[:100]).partial_fit(X[100:200])
            before = state(m)
            m.set_params(**{p: v})
            try:
                m.partial_fit(X[200:])
            except Exception as e:
                o, d = judge_error(e, [p])
                s = same_state(before, state(m))
                if s is not True:
                    return WRONG, f"refused but changed: {s}"
                return o, d
            r = finite_model(m)
            if r is not True:
                return WRONG, r
            if p == "n_components" and len(m.weights_) != 5:
                return WRONG, f"n_components set to 5, stream kept {len(m.weights_)} silently"
            if p == "covariance_type" and np.shape(m.covariances_) != (2, 3):
                return (
                    WRONG,
                    f"covariance_type set to diag, stream kept covariances {np.shape(m.covariances_)}",
                )
            if p == "dtype" and m.means_.dtype != np.float32:
                return WRONG, f"dtype set to float32, stream kept {m.means_.dtype} silently"
            return OK, "accepted; model finite"

        case("stream", f"set_params_then_partial_fit.{p}={v!r}", f)

    # ---------- model files of streams: tamper
    def saved_stream(kind="GM", averaging=3):
        d = tempfile.mkdtemp(dir=tmpdir())
        p = os.path.join(d, "m.npz")
        if kind == "GM":
            m = (
                GM(averaging=averaging)
                .partial_fit(X[:100])
                .partial_fit(X[100:200])
                .partial_fit(X[200:])
            )
        else:
            m = (
                GC(averaging=averaging)
                .partial_fit(X[::2], Y[::2], classes=[0, 1])
                .partial_fit(X[1::2], Y[1::2])
            )
        m.save(p)
        return p, m

    def rewrite(p, edit):
        z = dict(np.load(p, allow_pickle=False))
        edit(z)
        with open(p, "wb") as fh:
            np.savez(fh, **z)

    def load_then_use(p, kind):
        cls = GaussianMixture if kind == "GM" else GMMClassifier
        m = cls.load(p)
        # use it: predict and continue the stream
        m.predict(X[:10])
        if kind == "GM":
            m.partial_fit(X[:100])
            r = finite_model(m)
        else:
            m.partial_fit(X[:100], Y[:100])
            r = True
        return m, r

    def key_like(z, sub):
        ks = [k for k in z if sub in k]
        return ks

    def set_key(sub, fn):
        def edit(z):
            ks = key_like(z, sub)
            if not ks:
                raise Verdict(OK, f"(no key containing {sub})")
            for k in ks:
                z[k] = fn(z[k])

        return edit

    def counters(i, val):
        def fn(a):
            a = a.copy()
            if a.size > i:
                a.flat[i] = val
            return a

        return fn

    tampers = {
        "counters0_2**62": set_key("stream_counters", counters(0, 2**62)),
        "counters1_2**62": set_key("stream_counters", counters(1, 2**62)),
        "counters2_2**62": set_key("stream_counters", counters(2, 2**62)),
        "counters3_big": set_key("stream_counters", counters(3, 10**6)),
        "counters0_neg": set_key("stream_counters", counters(0, -5)),
        "counters2_neg": set_key("stream_counters", counters(2, -5)),
        "counters2_zero": set_key("stream_counters", counters(2, 0)),
        "counters_float": set_key("stream_counters", lambda a: a.astype(float)),
        "counters_short": set_key("stream_counters", lambda a: a[:2]),
        "counters_2d": set_key("stream_counters", lambda a: a.reshape(1, -1)),
        "counts_zero": set_key("stream_stats_counts", lambda a: np.zeros_like(a)),
        "counts_1e308": set_key("stream_stats_counts", lambda a: np.full_like(a, 1e308)),
        "counts_nan": set_key("stream_stats_counts", lambda a: np.full_like(a, np.nan)),
        "counts_neg": set_key("stream_stats_counts", lambda a: -a),
        "counts_wrong_len": set_key("stream_stats_counts", lambda a: np.append(a, 0.1)),
        "means_inf": set_key("stream_stats_means", lambda a: np.full_like(a, np.inf)),
        "means_shape": set_key("stream_stats_means", lambda a: a[:, :2]),
        "scatter_not_pd": set_key("stream_stats_scatter", lambda a: -a),
        "scatter_nan": set_key("stream_stats_scatter", lambda a: np.full_like(a, np.nan)),
        "scatter_asym": set_key(
            "stream_stats_scatter", lambda a: a + np.triu(np.ones(a.shape[-2:]), 1)
        ),
        "weights_not_1": set_key("weights_", lambda a: a * 2),
        "weights_neg": set_key(
            "weights_", lambda a: a * np.array([-1, 3])[: a.shape[-1]] if a.shape[-1] == 2 else -a
        ),
        "means_nan": set_key("means_", lambda a: np.full_like(a, np.nan)),
        "cov_not_pd": set_key("covariances_", lambda a: -a),
        "cov_shape": set_key("covariances_", lambda a: a[..., :2, :2]),
        "cov_float16": set_key("covariances_", lambda a: a.astype(np.float16)),
        "means_int": set_key("means_", lambda a: a.astype(np.int64)),
        "n_iter_neg": set_key("n_iter_", lambda a: np.array(-1)),
        "converged_str": set_key("converged_", lambda a: np.array("yes")),
        "lower_bound_arr": set_key("lower_bound_", lambda a: np.zeros(3)),
        "drop_scatter": lambda z: (
            z.pop([k for k in z if "scatter" in k][0]) if any("scatter" in k for k in z) else None
        ),
        "drop_means": lambda z: z.pop("means_", None),
        "extra_key": lambda z: z.__setitem__("evil", np.zeros(3)),
        "meta_bad_json": lambda z: z.__setitem__("__meta__", np.array("{not json")),
        "meta_ncomp_5": lambda z: z.__setitem__(
            "__meta__",
            np.array(str(z["__meta__"]).replace('"n_components": 2', '"n_components": 5')),
        ),
        "meta_cov_diag": lambda z: z.__setitem__(
            "__meta__",
            np.array(
                str(z["__meta__"]).replace('"covariance_type": "full"', '"covariance_type": "diag"')
            ),
        ),
        "meta_kind_other": lambda z: z.__setitem__(
            "__meta__",
            np.array(
                str(z["__meta__"])
                .replace('"kind": "GaussianMixture"', '"kind": "PatchDenoiser"')
                .replace('"kind": "GMMClassifier"', '"kind": "GaussianMixture"')
            ),
        ),
        "meta_version_99": lambda z: z.__setitem__(
            "__meta__",
            np.array(str(z["__meta__"]).replace('"format_version": 1', '"format_version": 99')),
        ),
        "meta_averaging_neg": lambda z: z.__setitem__(
            "__meta__", np.array(str(z["__meta__"]).replace('"averaging": 3', '"averaging": -3'))
        ),
        "meta_averaging_null": lambda z: z.__setitem__(
            "__meta__", np.array(str(z["__meta__"]).replace('"averaging": 3', '"averaging": null'))
        ),
        "meta_decay_nan": lambda z: z.__setitem__(
            "__meta__",
            np.array(str(z["__meta__"]).replace('"learning_decay": 0.6', '"learning_decay": NaN')),
        ),
        "meta_dtype_f32": lambda z: z.__setitem__(
            "__meta__",
            np.array(str(z["__meta__"]).replace('"dtype": "float64"', '"dtype": "float32"')),
        ),
        "meta_dtype_evil": lambda z: z.__setitem__(
            "__meta__",
            np.array(str(z["__meta__"]).replace('"dtype": "float64"', '"dtype": "object"')),
        ),
        "meta_huge": lambda z: z.__setitem__(
            "__meta__", np.array(str(z["__meta__"])[:-1] + ', "pad": "' + "x" * 10 + '"}')
        ),
    }
    for kind in ("GM", "GC"):
        for name, edit in tampers.items():

            def f(name=name, edit=edit, kind=kind):
                p, m = saved_stream(kind)
                try:
                    rewrite(p, edit)
                except Verdict as v:
                    return v.outcome, v.detail
                try:
                    cls = GaussianMixture if kind == "GM" else GMMClassifier
                    cls.load(p)
                except Exception as e:
                    o, d = judge_error(e, [os.path.basename(p), p])
                    return o, d
                # loaded: it must then be usable without blaming the data
                try:
                    m2, r = load_then_use(p, kind)
                except Exception as e:
                    return WRONG, f"tampered file loaded, then failed later: {_short(e)}"
                if name in ("extra_key", "meta_huge", "meta_dtype_f32") or (
                    kind == "GC" and name in ("drop_means", "meta_ncomp_5")
                ):
                    # harmless, or a no-op on this file (a float32 stream keeps float64 statistics; the
                    # classifier stores no means_ / n_components at the top level)
                    return OK, "harmless tamper accepted"
                if r is not True:
                    return WRONG, f"tampered file loaded, stream now {r}"
                return WRONG, "tampered file loaded silently"

            case("stream", f"{kind}.load.tampered.{name}", f)

    # raw byte damage
    def raw(kind, how):
        p, m = saved_stream(kind)
        data = open(p, "rb").read()
        if how == "truncate_half":
            data = data[: len(data) // 2]
        elif how == "truncate_1":
            data = data[:-1]
        elif how.startswith("flip_"):
            frac = float(how.split("_")[1])
            i = int(len(data) * frac)
            data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
        elif how == "empty":
            data = b""
        elif how == "text":
            data = b"hello world\n"
        elif how == "pickle":
            z = dict(np.load(p))
            z["means_"] = np.array([object()], dtype=object)
            bio = io.BytesIO()
            np.savez(bio, **z)
            data = bio.getvalue()
        with open(p, "wb") as fh:
            fh.write(data)
        cls = GaussianMixture if kind == "GM" else GMMClassifier
        try:
            cls.load(p)
        except Exception as e:
            return judge_error(e, [os.path.basename(p), p])
        if how in ("truncate_1",) or how.startswith("flip_"):
            # a flip in the zip's slack could be harmless: compare the loaded model
            try:
                m2 = cls.load(p)
                if (
                    kind == "GM"
                    and np.array_equal(m2.means_, m.means_)
                    and np.array_equal(m2.covariances_, m.covariances_)
                ):
                    return OK, "damage in non-data bytes; model identical"
                if kind == "GC":
                    return OK, "loaded (classifier, not compared)"
            except Exception as e:
                return judge_error(e, [p])
            return WRONG, "damaged file loaded with different numbers"
        return WRONG, "damaged file loaded"

    for kind in ("GM", "GC"):
        for how in ["truncate_half", "truncate_1", "empty", "text", "pickle"] + [
            f"flip_{f}" for f in (0.05, 0.2, 0.4, 0.6, 0.8, 0.95)
        ]:
            case("stream", f"{kind}.load.raw.{how}", lambda kind=kind, how=how: raw(kind, how))

    # paths
    def load_path(kind):
        d = tempfile.mkdtemp(dir=tmpdir())
        if kind == "dir":
            p = d
        elif kind == "missing":
            p = os.path.join(d, "nope.npz")
        elif kind == "dangling":
            p = os.path.join(d, "l.npz")
            os.symlink(os.path.join(d, "nope"), p)
        elif kind == "none":
            p = None
        elif kind == "int":
            # an int path: must not be taken as a file descriptor (np.load would close it)
            fd = os.open(os.devnull, os.O_RDONLY)
            try:
                GaussianMixture.load(fd)
            except Exception as e:
                try:
                    os.fstat(fd)
                except OSError:
                    raise Verdict(
                        WRONG, f"load(int) closed the process's file descriptor {fd} ({_short(e)})"
                    )
                os.close(fd)
                raise
            os.close(fd)
            return None
        return GaussianMixture.load(p)

    for k in ("dir", "missing", "dangling", "none", "int"):
        case(
            "stream",
            f"load.path.{k}",
            lambda k=k: expect_error(
                lambda: load_path(k),
                "path",
                "file",
                "director",
                "exist",
                "nope",
                "l.npz",
                "hostile",
            ),
        )

    def save_over(kind):
        d = tempfile.mkdtemp(dir=tmpdir())
        p = os.path.join(d, "keep.npz")
        with open(p, "wb") as fh:
            fh.write(b"precious")
        try:
            if kind == "unfitted":
                GM().save(p)
            elif kind == "dir":
                GM().fit(X).save(d)
            elif kind == "bad_param":
                m = GM().fit(X)
                m.set_params(n_components=-1)
                m.save(p)
            elif kind == "nonexistent_dir":
                GM().fit(X).save(os.path.join(d, "no", "m.npz"))
        except Exception as e:
            o, dd = judge_error(e, ["path", "fit", "director", "n_components", "exist", "no", d])
            if open(p, "rb").read() != b"precious":
                return DATA_LOSS, "existing file changed by a failed save"
            return o, dd
        if open(p, "rb").read() != b"precious" and kind in ("unfitted", "bad_param"):
            # bad_param accepted: can the file be loaded?
            try:
                GaussianMixture.load(p)
                return OK, "saved, loads"
            except Exception as e:
                return WRONG, f"saved a file load refuses: {_short(e)}"
        return WRONG if kind in ("dir", "nonexistent_dir", "unfitted") else OK, "accepted"

    for k in ("unfitted", "dir", "bad_param", "nonexistent_dir"):
        case("stream", f"save.{k}", lambda k=k: save_over(k))


# ================================================================ dask
def dask_cases():
    import dask
    import dask.array as da

    dask.config.set(scheduler="sync")
    Xd = da.from_array(X, chunks=100)

    def ref_model():
        return GM().fit(X)

    def check_like_numpy(meth, Xn, model_fn=ref_model):
        def check(r):
            m = model_fn()
            r = np.asarray(r.compute() if hasattr(r, "compute") else r)
            e = np.asarray(getattr(m, meth)(Xn))
            if r.shape != e.shape:
                return f"shape {r.shape} vs {e.shape}"
            if not np.allclose(r, e, rtol=1e-6, atol=1e-8, equal_nan=True):
                return f"differs from numpy by {np.nanmax(np.abs(r - e))}"
            return True

        return check

    meths = ["predict", "predict_proba", "score_samples", "score", "bic", "aic"]
    # empty blocks
    filt = Xd[Xd[:, 0] > 100]  # all filtered: unknown chunks, zero rows
    part = Xd[Xd[:, 0] > 2.5]  # some blocks empty, unknown sizes
    Xpart = X[X[:, 0] > 2.5]
    zero_chunk = da.concatenate([Xd[:0], Xd, Xd[:0]])
    for meth in meths:
        for name, arr, ref in (
            ("partial_filter", part, Xpart),
            ("zero_chunks", zero_chunk, X),
            ("computed_sizes", part.compute_chunk_sizes(), Xpart),
        ):
            case(
                "dask",
                f"{meth}.{name}",
                lambda meth=meth, arr=arr, ref=ref: expect_result(
                    lambda: getattr(ref_model(), meth)(arr), check_like_numpy(meth, ref), "X"
                ),
            )
        if meth in ("predict", "predict_proba", "score_samples"):
            case(
                "dask",
                f"{meth}.all_filtered",
                lambda meth=meth: expect_result(
                    lambda: getattr(ref_model(), meth)(filt),
                    lambda r: (
                        True
                        if len(np.asarray(r.compute() if hasattr(r, "compute") else r)) == 0
                        else "not empty"
                    ),
                    "X",
                ),
            )
        else:
            case(
                "dask",
                f"{meth}.all_filtered",
                lambda meth=meth: expect_error(
                    lambda: getattr(ref_model(), meth)(filt), "X", "sample"
                ),
            )

    # classifier methods on dask
    def clf():
        return GC().fit(X, Y)

    for meth in ("predict", "predict_proba", "score"):

        def args(arr, ref, meth=meth):
            return (arr, Y[X[:, 0] > 2.5]) if meth == "score" else (arr,)

        if meth == "score":
            case(
                "dask",
                f"GC.{meth}.partial_filter",
                lambda: expect_result(
                    lambda: clf().score(part, da.from_array(Y, chunks=100)[Xd[:, 0] > 2.5]),
                    lambda r: (
                        True
                        if np.isclose(float(np.asarray(r)), clf().score(Xpart, Y[X[:, 0] > 2.5]))
                        else f"{r}"
                    ),
                    "X",
                    "y",
                ),
            )
        else:
            case(
                "dask",
                f"GC.{meth}.partial_filter",
                lambda meth=meth: expect_result(
                    lambda: getattr(clf(), meth)(part), check_like_numpy(meth, Xpart, clf), "X"
                ),
            )

    # fitting on dask: odd arrays
    def fit_ok(arr, ref=None):
        def check(m):
            r = finite_model(m)
            if r is not True:
                return r
            if m.means_.shape != (2, 3) or getattr(m, "n_features_in_", 3) != 3:
                return f"means {m.means_.shape}, n_features_in_ {m.n_features_in_}"
            if ref is not None:
                e = GM().fit(ref)
                if not np.allclose(sorted_means(m), sorted_means(e), atol=0.2):
                    return f"means far from numpy fit: {sorted_means(m).round(2).tolist()} vs {sorted_means(e).round(2).tolist()}"
            return True

        return check

    fit_cases = {
        "plain": (Xd, X),
        "zero_chunks": (zero_chunk, X),
        "unknown_sizes": (Xd[Xd[:, 0] > -100], X),
        "col_chunks": (da.from_array(X, chunks=(100, 1)), X),
        "one_chunk": (da.from_array(X, chunks=-1), X),
        "tiny_chunks": (da.from_array(X, chunks=7), X),
        "float32": (Xd.astype(np.float32), X.astype(np.float32)),
        "int": (da.from_array(np.round(X * 10).astype(int), chunks=100), np.round(X * 10)),
        "fortran": (da.from_array(np.asfortranarray(X), chunks=100), X),
    }
    for name, (arr, ref) in fit_cases.items():
        case(
            "dask",
            f"fit.{name}",
            lambda arr=arr, ref=ref: expect_result(lambda: GM().fit(arr), fit_ok(arr, ref), "X"),
        )
    bad_fit = {
        "nan_all": da.full((300, 3), np.nan, chunks=100),
        "inf": da.where(da.arange(300)[:, None] == 5, np.inf, Xd),
        "complex": Xd + 1j,
        "str": Xd.astype(str),
        "object": Xd.astype(object),
        "1d": Xd[:, 0],
        "3d": Xd[:, :, None],
        "empty": Xd[:0],
        "empty_cols": Xd[:, :0],
        "datetime": da.zeros((300, 3), dtype="datetime64[s]", chunks=100),
        "lying_wider": Xd.map_blocks(lambda b: np.hstack([b, b]), dtype=float),
        "lying_narrower": Xd.map_blocks(lambda b: b[:, :2], dtype=float),
        "lying_complex": Xd.map_blocks(lambda b: b + 1j, dtype=float),
        "lying_object": Xd.map_blocks(lambda b: b.astype(object), dtype=float),
        "lying_str": Xd.map_blocks(lambda b: b.astype(str), dtype=float),
        "lying_fewer_rows": Xd.map_blocks(lambda b: b[:-1], dtype=float),
        "lying_more_rows": Xd.map_blocks(lambda b: np.vstack([b, b]), dtype=float),
        "lying_1d": Xd.map_blocks(lambda b: b[:, 0], dtype=float),
        "lying_inf_block": Xd.map_blocks(
            lambda b, block_info=None: b * np.inf if block_info[0]["chunk-location"][0] == 1 else b,
            dtype=float,
        ),
        "lying_nan_block": Xd.map_blocks(
            lambda b, block_info=None: b * np.nan if block_info[0]["chunk-location"][0] == 1 else b,
            dtype=float,
        ),
        "raising_block": Xd.map_blocks(
            lambda b, block_info=None: (
                (_ for _ in ()).throw(RuntimeError("user block failed"))
                if block_info[0]["chunk-location"][0] == 2
                else b
            ),
            dtype=float,
        ),
    }
    for name, arr in bad_fit.items():
        names = (
            "X",
            "block",
            "dtype",
            "width",
            "feature",
            "finite",
            "infinit",
            "nan",
            "missing",
            "row",
            "sample",
            "chunk",
            "user block failed",
        )
        if name == "lying_nan_block":
            # NaN = missing; a whole-NaN block observes nothing: fit on the rest or refuse
            case(
                "dask",
                f"fit.{name}",
                lambda arr=arr: expect_result(lambda: GM().fit(arr), fit_ok(arr), *names),
            )
            case(
                "dask",
                f"predict.{name}",
                lambda arr=arr: expect_result(
                    lambda: np.asarray(ref_model().predict(arr)),
                    lambda r: (
                        True
                        if np.array_equal(
                            r,
                            ref_model().predict(
                                np.where(np.arange(300)[:, None] // 100 == 1, np.nan, X)
                            ),
                        )
                        else "differs from NaN rows in numpy"
                    ),
                    *names,
                ),
            )
            case(
                "dask",
                f"partial_fit.{name}",
                lambda arr=arr: expect_result(lambda: GM().partial_fit(arr), finite_model, *names),
            )
            continue
        else:
            case(
                "dask",
                f"fit.{name}",
                lambda arr=arr, names=names: expect_error(lambda: GM().fit(arr), *names),
            )
        if name.startswith("lying") or name in ("inf", "complex", "str"):
            case(
                "dask",
                f"predict.{name}",
                lambda arr=arr, names=names: expect_error(
                    lambda: np.asarray(ref_model().predict(arr)), *names
                ),
            )
            case(
                "dask",
                f"partial_fit.{name}",
                lambda arr=arr, names=names: expect_error(lambda: GM().partial_fit(arr), *names),
            )

    # masked dask == NaN missing
    M = np.zeros_like(X, bool)
    M[::7, 2] = True
    Xn = X.copy()
    Xn[M] = np.nan

    def masked_dask(meth):
        Xmd = da.ma.masked_array(
            da.from_array(np.where(M, 1e6, X), chunks=100), mask=da.from_array(M, chunks=100)
        )
        if meth == "fit":
            a = GM().fit(Xmd)
            b = GM().fit(Xn)
            return (
                True
                if np.allclose(sorted_means(a), sorted_means(b), atol=1e-3)
                else f"{sorted_means(a).round(3).tolist()} vs {sorted_means(b).round(3).tolist()}"
            )
        m = ref_model()
        r = getattr(m, meth)(Xmd)
        r = np.asarray(r.compute() if hasattr(r, "compute") else r)
        e = np.asarray(getattr(m, meth)(Xn))
        return True if np.allclose(r, e, equal_nan=True) else "differs from NaN-missing"

    for meth in ("fit", "predict", "score_samples", "predict_proba", "score"):
        case(
            "dask",
            f"masked.{meth}",
            lambda meth=meth: expect_result(lambda: masked_dask(meth), lambda r: r, "mask", "X"),
        )
    # classifier with dask labels
    yd = da.from_array(Y, chunks=100)
    case(
        "dask",
        "GC.fit.dask_y",
        lambda: expect_result(
            lambda: GC().fit(Xd, yd),
            lambda m: (
                True
                if np.array_equal(m.predict(X), GC().fit(X, Y).predict(X))
                else "differs from numpy"
            ),
            "y",
        ),
    )
    case(
        "dask",
        "GC.fit.y_short",
        lambda: expect_error(lambda: GC().fit(Xd, yd[:-1]), "y", "sample", "length"),
    )
    case(
        "dask",
        "GC.fit.y_nan",
        lambda: expect_error(
            lambda: GC().fit(
                Xd,
                da.from_array(np.where(np.arange(300) == 3, np.nan, Y.astype(float)), chunks=100),
            ),
            "y",
            "label",
            "nan",
        ),
    )
    case(
        "dask",
        "GC.fit.y_chunks_mismatch",
        lambda: expect_result(
            lambda: GC().fit(Xd, da.from_array(Y, chunks=77)),
            lambda m: (
                True if np.array_equal(m.predict(X), GC().fit(X, Y).predict(X)) else "differs"
            ),
            "y",
            "chunk",
        ),
    )
    case("dask", "GC.fit.y_2d", lambda: expect_error(lambda: GC().fit(Xd, yd[:, None]), "y"))
    # failed dask fit keeps previous fit
    for name in ("inf", "lying_wider", "raising_block", "empty"):

        def f(name=name):
            m = GM().fit(X)
            before = state(m)
            try:
                m.fit(bad_fit[name])
            except Exception:
                pass
            s = same_state(before, state(m))
            return (OK, "unchanged") if s is True else (WRONG, s)

        case("dask", f"failed_fit_keeps_previous.{name}", f)
    # threaded scheduler
    case(
        "dask",
        "threaded.fit_predict",
        lambda: _with_sched(
            "threads",
            lambda: expect_result(
                lambda: GM().fit_predict(Xd),
                lambda r: True if len(np.asarray(r)) == 300 else "len",
                "X",
            ),
        ),
    )

    # input not modified
    def not_modified():
        base = X.copy()
        arr = da.from_array(base, chunks=100)
        GM().fit(arr).predict(arr)
        return (OK, "unchanged") if np.array_equal(base, X) else (WRONG, "input modified")

    case("dask", "never_modified", not_modified)


def _with_sched(s, fn):
    import dask

    with dask.config.set(scheduler=s):
        return fn()


def cluster_dask_cases():
    """At most one LocalCluster, closed at the end."""

    def run():
        import dask.array as da
        from distributed import Client, LocalCluster

        results = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cluster = LocalCluster(
                n_workers=2,
                processes=True,
                host="127.0.0.1",
                threads_per_worker=1,
                dashboard_address=None,
            )
            client = Client(cluster)
        try:
            Xd = da.from_array(X, chunks=100)
            try:
                m = GM().fit(Xd)
                results.append(("fit", OK if finite_model(m) is True else WRONG, "distributed fit"))
            except Exception as e:
                results.append(("fit",) + judge_error(e, []))
            lying = Xd.map_blocks(lambda b: np.hstack([b, b]), dtype=float)
            results.append(
                ("lying_wider",)
                + expect_error(lambda: GM().fit(lying), "X", "block", "width", "feature")
            )
            m0 = GM().fit(X)
            before = state(m0)

            def closer():
                time.sleep(0.3)
                client.close()

            big = da.from_array(np.tile(X, (200, 1)), chunks=1000)
            th = threading.Thread(target=closer)
            th.start()
            try:
                m0.set_params(max_iter=500, tol=0)
                m0.fit(big)
                o, d = OK, "fit finished before close"
            except Exception as e:
                o, d = judge_error(e, ["clos", "client"])
            th.join()
            m0.set_params(max_iter=100, tol=1e-3)
            s = same_state(before, state(m0))
            if o == OK and s is not True and d != "fit finished before close":
                o, d = WRONG, f"failed fit changed the model: {s}"
            results.append(("client_closed_mid_fit", o, d))
        finally:
            with contextlib.suppress(Exception):
                client.close()
            cluster.close()
        return results

    return run


# ================================================================ clustering API
def clustering_cases():
    from sklearn import metrics as skm

    import gmmfast.metrics as gm
    from gmmfast.mixture import k_means, select_mixture
    from gmmfast.synthetic import make_noncircular

    yt = np.repeat([0, 1, 2], 50)
    yc = np.r_[np.repeat([1, 2, 0], 45), RNG.randint(0, 3, 15)]

    def compare(y1, y2):
        def run():
            r = gm.clustering_scores(y1, y2)
            ari = skm.adjusted_rand_score(y1, y2)
            nmi = skm.normalized_mutual_info_score(y1, y2)
            bad = []
            for k, v in r.items():
                kl = k.lower()
                if "ari" in kl or "rand" in kl:
                    if not np.isclose(v, ari):
                        bad.append(f"{k}={v} vs {ari}")
                if "nmi" in kl or "mutual" in kl:
                    if not np.isclose(v, nmi):
                        bad.append(f"{k}={v} vs {nmi}")
            return True if not bad else "; ".join(bad)

        return run

    good_pairs = {
        "basic": (yt, yc),
        "strings": (yt.astype(str), yc.astype(str)),
        "mixed_ranges": (yt * 1000 - 7, yc),
        "perfect": (yt, yt + 5),
        "single_cluster": (yt, np.zeros_like(yt)),
        "single_label": (np.zeros_like(yt), yc),
        "both_single": (np.zeros(10, int), np.zeros(10, int)),
        "all_distinct": (np.arange(150), np.arange(150)),
        "negative": (-yt, -yc),
        "bool": (yt == 0, yc == 0),
        "list": (yt.tolist(), yc.tolist()),
        "tuple": (tuple(yt), tuple(yc)),
        "float_int_values": (yt.astype(float), yc.astype(float)),
        "uint8": (yt.astype(np.uint8), yc.astype(np.uint8)),
        "int64_extreme": (
            np.where(yt == 0, np.iinfo(np.int64).min, np.where(yt == 1, np.iinfo(np.int64).max, 0)),
            yc,
        ),
        "two_samples": (np.array([0, 1]), np.array([1, 0])),
        "one_sample": (np.array([0]), np.array([3])),
        "strided": (np.repeat(yt, 2)[::2], np.repeat(yc, 2)[::2]),
    }
    for name, (a, b) in good_pairs.items():
        case(
            "clust",
            f"clustering_scores.{name}",
            lambda a=a, b=b: expect_result(
                compare(a, b), lambda r: r, "labels", "y_true", "clusters"
            ),
        )

    def bomb():
        tracemalloc.start()
        try:
            gm.clustering_scores(np.arange(100000), np.arange(100000) // 2)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return (
            (OK, f"peak {peak / 2**20:.0f} MiB")
            if peak < BOMB_BYTES
            else (BOMB, f"peak {peak / 2**20:.0f} MiB")
        )

    case("clust", "clustering_scores.memory_100k_distinct", lambda: _guard(bomb))

    def bomb2(fn, label):
        def run():
            tracemalloc.start()
            try:
                try:
                    fn()
                except Exception as e:
                    o, d = judge_error(
                        e, ["y_true", "clusters", "y_pred", "labels", "large", "many"]
                    )
                    _, peak = tracemalloc.get_traced_memory()
                    if peak > BOMB_BYTES:
                        return BOMB, f"peak {peak / 2**20:.0f} MiB then {d}"
                    return o, d
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            return (
                (OK, f"peak {peak / 2**20:.0f} MiB")
                if peak < BOMB_BYTES
                else (BOMB, f"{label} peak {peak / 2**20:.0f} MiB")
            )

        return run

    n = 200000
    case(
        "clust",
        "classification_scores.memory_distinct",
        lambda: _guard(
            bomb2(lambda: gm.classification_scores(np.arange(n), np.arange(n)[::-1]), "cls")
        ),
    )
    case(
        "clust",
        "cluster_mapping.memory_distinct",
        lambda: _guard(bomb2(lambda: gm.cluster_mapping(np.arange(n), np.arange(n) // 2), "map")),
    )
    case(
        "clust",
        "contingency.dense.memory_distinct",
        lambda: _guard(bomb2(lambda: gm.contingency(np.arange(n), np.arange(n) // 2), "cont")),
    )
    case(
        "clust",
        "contingency.sparse.memory_distinct",
        lambda: _guard(
            bomb2(lambda: gm.contingency(np.arange(n), np.arange(n) // 2, sparse=True), "cont")
        ),
    )
    case(
        "clust",
        "clustering_scores.memory_huge_values",
        lambda: _guard(
            bomb2(
                lambda: gm.clustering_scores(
                    np.arange(1000) * 10**15, np.arange(1000) % 7 * 10**17
                ),
                "vals",
            )
        ),
    )

    def contingency_vs_sklearn(sparse):
        from sklearn.metrics.cluster import contingency_matrix

        C, a, b = gm.contingency(yt, yc, sparse=sparse)
        C = C.toarray() if hasattr(C, "toarray") else np.asarray(C)
        E = contingency_matrix(yt, yc)
        return True if np.array_equal(C, E) else f"{C.tolist()} vs {E.tolist()}"

    for sp in (False, True):
        case(
            "clust",
            f"contingency.vs_sklearn.sparse={sp}",
            lambda sp=sp: expect_result(lambda: contingency_vs_sklearn(sp), lambda r: r),
        )

    def cls_vs_sklearn(a, b):
        def run():
            r = gm.classification_scores(a, b)
            exp = {
                "accuracy": skm.accuracy_score(a, b),
                "precision": skm.precision_score(a, b, average="macro", zero_division=0),
                "recall": skm.recall_score(a, b, average="macro", zero_division=0),
                "f1": skm.f1_score(a, b, average="macro", zero_division=0),
            }
            bad = []
            for k, v in r.items():
                for ek, ev in exp.items():
                    if ek in k.lower() and not np.isclose(v, ev):
                        bad.append(f"{k}={v:.4f} vs sklearn {ev:.4f}")
            return True if not bad else "; ".join(bad)

        return run

    cls_pairs = {
        "basic": (yt, yc),
        "missing_pred_class": (yt, np.where(yc == 2, 0, yc)),
        "extra_pred_class": (yt, np.where(yc == 2, 9, yc)),
        "strings": (yt.astype(str), yc.astype(str)),
        "single": (np.zeros(5, int), np.zeros(5, int)),
        "bool": (yt == 0, yc == 0),
    }
    for name, (a, b) in cls_pairs.items():
        case(
            "clust",
            f"classification_scores.{name}",
            lambda a=a, b=b: expect_result(cls_vs_sklearn(a, b), lambda r: r, "y_true", "y_pred"),
        )

    def mapping_check(a, b):
        def run():
            from scipy.optimize import linear_sum_assignment
            from sklearn.metrics.cluster import contingency_matrix

            mp = gm.cluster_mapping(a, b)
            C = contingency_matrix(a, b)
            r, c = linear_sum_assignment(-C)
            best = C[r, c].sum()
            got = sum(np.sum((np.asarray(b) == k) & (np.asarray(a) == v)) for k, v in mp.items())
            # many clusters may map to one label: at least the one-to-one optimum, each cluster to its majority label
            if got < best:
                return f"matched {got} < one-to-one optimum {best}"
            for k, v in mp.items():
                labs, cnt = np.unique(np.asarray(a)[np.asarray(b) == k], return_counts=True)
                if len(cnt) and cnt[list(labs).index(v)] < cnt.max() if v in labs else len(cnt):
                    return f"cluster {k} mapped to {v}, not its majority label"
            return True

        return run

    for name, (a, b) in {
        "basic": (yt, yc),
        "more_clusters": (yt, np.arange(150) % 5),
        "fewer_clusters": (yt, np.arange(150) % 2),
        "strings": (yt.astype(str), yc),
    }.items():
        case(
            "clust",
            f"cluster_mapping.{name}",
            lambda a=a, b=b: expect_result(mapping_check(a, b), lambda r: r, "y_true", "clusters"),
        )

    bad_labels = {
        "none": None,
        "nan": np.where(np.arange(150) == 2, np.nan, yt),
        "inf": np.where(np.arange(150) == 2, np.inf, yt),
        "float_fraction": yt + 0.5,
        "2d": np.c_[yt, yt],
        "0d": np.int64(1),
        "empty": np.array([], int),
        "mixed_obj": np.array([1, "a"] * 75, dtype=object),
        "none_obj": np.array([None, 1] * 75, dtype=object),
        "ragged": [[1, 2], [1]] * 75,
        "string": "abc" * 50,
        "dict": dict(enumerate(yt)),
        "set": set(range(150)),
        "generator": (int(v) for v in yt),
        "complex": yt.astype(complex),
        "datetime": np.zeros(150, "datetime64[s]"),
        "short": yt[:-1],
        "masked": np.ma.masked_array(yt, mask=np.arange(150) == 3),
        "lists_obj": np.array([[1], [2]] * 75, dtype=object),
    }
    for fn_name in ("clustering_scores", "classification_scores", "cluster_mapping", "contingency"):
        f = getattr(gm, fn_name)
        for name, bl in bad_labels.items():
            names = ("y_true", "clusters", "y_pred", "labels")
            if name == "generator":
                # a generator: consumed correctly (==list) or refused naming the argument
                def run(f=f, fn_name=fn_name):
                    r = f((int(v) for v in yt), yc)
                    e = f(yt, yc)
                    if fn_name == "contingency":
                        return (
                            True
                            if np.array_equal(np.asarray(r[0]), np.asarray(e[0]))
                            else "differs from list"
                        )
                    return True if str(r) == str(e) else f"{r} vs {e}"

                case(
                    "clust",
                    f"{fn_name}.bad.{name}",
                    lambda run=run, names=names: expect_result(run, lambda r: r, *names),
                )
                continue
            if name == "float_fraction":
                # float labels that are not integers: compared as values is fine
                case(
                    "clust",
                    f"{fn_name}.bad.{name}",
                    lambda f=f, bl=bl: expect_result(
                        lambda: f(bl, yc), lambda r: True, "y_true", "labels"
                    ),
                )
                continue
            case(
                "clust",
                f"{fn_name}.bad.{name}.first",
                lambda f=f, bl=bl, names=names: expect_error(lambda: f(bl, yc), *names),
            )
            if name not in ("short",):
                case(
                    "clust",
                    f"{fn_name}.bad.{name}.second",
                    lambda f=f, bl=bl, names=names: expect_error(lambda: f(yt, bl), *names),
                )
    # mixture_scores misuse
    ms_bad = {
        "classifier": lambda: gm.mixture_scores(GC().fit(X, Y), X),
        "non_model": lambda: gm.mixture_scores(object(), X),
        "string_model": lambda: gm.mixture_scores("model", X),
        "none_model": lambda: gm.mixture_scores(None, X),
        "unfitted": lambda: gm.mixture_scores(GM(), X),
        "width": lambda: gm.mixture_scores(GM().fit(X), X[:, :2]),
        "heldout_width": lambda: gm.mixture_scores(GM().fit(X), X, X[:, :2]),
        "empty_X": lambda: gm.mixture_scores(GM().fit(X), np.zeros((0, 3))),
    }

    def sk_gm():
        from sklearn.mixture import GaussianMixture as SGM

        s = SGM(2, random_state=0).fit(X)
        r = gm.mixture_scores(s, X)
        return (
            True
            if np.isclose(r["bic"], s.bic(X)) and np.isclose(r["aic"], s.aic(X))
            else f"{r} vs sklearn bic {s.bic(X)}"
        )

    case("clust", "mixture_scores.sklearn_gm", lambda: expect_result(sk_gm, lambda r: r, "model"))
    case(
        "clust",
        "mixture_scores.nan_X_all_missing",
        lambda: expect_result(
            lambda: gm.mixture_scores(GM().fit(X), np.full((5, 3), np.nan)),
            lambda r: True if r["log_likelihood"] == 0.0 else f"{r}",
            "X",
        ),
    )
    for name, fn in ms_bad.items():
        case(
            "clust",
            f"mixture_scores.{name}",
            lambda fn=fn: expect_error(
                fn, "model", "X", "X_heldout", "fit", "GaussianMixture", "n_features"
            ),
        )

    def ms_ok():
        m = GM().fit(X)
        r = gm.mixture_scores(m, X, X[:50])
        bad = []
        for k, v in r.items():
            kl = k.lower()
            if kl == "bic" and not np.isclose(v, m.bic(X)):
                bad.append(f"bic {v} vs {m.bic(X)}")
            if kl == "aic" and not np.isclose(v, m.aic(X)):
                bad.append(f"aic {v} vs {m.aic(X)}")
        return True if not bad else "; ".join(bad)

    case("clust", "mixture_scores.values", lambda: expect_result(ms_ok, lambda r: r))

    # ---------- k_means
    def km_check(Xin, k):
        def check(r):
            centres, labels, inertia = r
            Xf = np.asarray(Xin, dtype=np.float64)
            d = ((Xf[:, None, :] - np.asarray(centres, np.float64)[None]) ** 2).sum(-1)
            true_inertia = d[np.arange(len(Xf)), labels].sum()
            if not np.isfinite(inertia):
                return f"inertia {inertia}"
            scale = float(np.sum((Xf - Xf.mean(0)) ** 2))
            if not np.isclose(inertia, true_inertia, rtol=1e-3, atol=max(1e-300, scale * 1e-12)):
                return f"inertia {inertia:.6g} vs recomputed {true_inertia:.6g}"
            if np.any(d.min(1) < d[np.arange(len(Xf)), labels] * (1 - 1e-6) - 1e-300):
                return "labels not nearest centres"
            from sklearn.cluster import KMeans

            sk = KMeans(k, n_init=10, random_state=0).fit(Xf)
            if inertia > sk.inertia_ * 1.5 + 1e-300:
                return f"inertia {inertia:.4g} > 1.5x sklearn {sk.inertia_:.4g}"
            return True

        return check

    Xk = np.vstack([RNG.randn(100, 2) + c for c in ([0, 0], [8, 0], [0, 8])])
    km_X = {
        "plain": Xk,
        "f32_1e20": (Xk * 1e20).astype(np.float32),
        "f32_1e-20": (Xk * 1e-20).astype(np.float32),
        "f32_offset_1e6": (Xk + 1e6).astype(np.float32),
        "f64_1e150": Xk * 1e150,
        "f64_1e-160": Xk * 1e-160,
        "f64_offset_1e12": Xk + 1e12,
        "fortran": np.asfortranarray(Xk),
        "strided": np.repeat(Xk, 2, 0)[::2],
        "int": np.round(Xk * 100).astype(np.int64),
        "list": Xk.tolist(),
        "duplicates_3distinct": np.repeat(Xk[:3], 50, axis=0),
        "1_feature": Xk[:, :1],
        "float16": Xk.astype(np.float16),
        "bool": Xk > 4,
    }
    for name, xx in km_X.items():
        case(
            "clust",
            f"k_means.X.{name}",
            lambda xx=xx: expect_result(
                lambda: k_means(xx, 3, random_state=0),
                km_check(xx, 3),
                "X",
                "scale",
                "range",
                "overflow",
            ),
        )
    km_bad_X = {
        "nan": np.where(np.arange(600).reshape(300, 2) == 3, np.nan, Xk),
        "inf": np.where(np.arange(600).reshape(300, 2) == 3, np.inf, Xk),
        "f64_1e300": Xk * 1e300,
        "complex": Xk + 1j,
        "str": Xk.astype(str),
        "1d": Xk[:, 0],
        "3d": Xk[:, :, None],
        "empty": np.zeros((0, 2)),
        "fewer_than_k": Xk[:2],
        "one_distinct": np.ones((50, 2)),
        "none": None,
        "object_str": np.array([["a", 1]] * 10, dtype=object),
        "masked": np.ma.masked_array(Xk, mask=np.arange(600).reshape(300, 2) == 3),
    }
    for name, xx in km_bad_X.items():
        if name in ("one_distinct", "f64_1e300"):
            case(
                "clust",
                f"k_means.X.{name}",
                lambda xx=xx: expect_result(
                    lambda: k_means(xx, 3, random_state=0),
                    km_check(xx, 3),
                    "X",
                    "distinct",
                    "n_clusters",
                    "finite",
                    "overflow",
                    "large",
                ),
            )
        else:
            case(
                "clust",
                f"k_means.X.{name}",
                lambda xx=xx: expect_error(
                    lambda: k_means(xx, 3, random_state=0),
                    "X",
                    "n_clusters",
                    "sample",
                    "mask",
                    "finite",
                    "nan",
                ),
            )
    km_params = {
        "n_clusters": [0, -1, 2.5, True, None, "3", 301, 10**20, np.float64(3.0)],
        "random_state": [-1, 2**64, "a", 1.5],
        "max_iter": [0, -1, 2.5, None, 10**30],
        "tol": [-1, float("nan"), "a", float("inf")],
        "n_threads": [0, -(10**9), "a", 2.5],
    }
    for p, vals in km_params.items():
        for v in vals:

            def f(p=p, v=v):
                kw = {"n_clusters": 3, "random_state": 0}
                kw[p] = v
                nc = kw.pop("n_clusters")
                return k_means(Xk, nc, **kw)

            acc = (
                km_check(Xk, 3)
                if (p, v) in (("max_iter", 10**30), ("n_threads", -(10**9)))
                else None
            )
            case(
                "clust",
                f"k_means.param.{p}={v!r}",
                lambda f=f, p=p, acc=acc: expect_error(f, p, accept=acc),
            )
    case(
        "clust",
        "k_means.param.random_state=Generator",
        lambda: expect_result(
            lambda: k_means(Xk, 3, random_state=np.random.default_rng(0)),
            km_check(Xk, 3),
            "random_state",
        ),
    )
    case(
        "clust",
        "k_means.param.random_state=RandomState",
        lambda: expect_result(
            lambda: k_means(Xk, 3, random_state=np.random.RandomState(0)),
            km_check(Xk, 3),
            "random_state",
        ),
    )
    case(
        "clust",
        "k_means.param.n_clusters=np.int8",
        lambda: expect_result(
            lambda: k_means(Xk, np.int8(3), random_state=0), km_check(Xk, 3), "n_clusters"
        ),
    )

    def km_not_modified():
        a = np.asfortranarray(Xk.astype(np.float32))
        b = a.copy()
        k_means(a, 3, random_state=0)
        return (OK, "unchanged") if np.array_equal(a, b) else (WRONG, "X modified")

    case("clust", "k_means.never_modified", km_not_modified)

    # ---------- select_mixture
    def sel_check(r):
        best = r.best_estimator_
        crit = r.criterion
        if crit in ("bic", "aic"):
            vals = []
            for row in r.results_:
                k = row.get("n_components")
                ct = row.get("covariance_type", "full")
                vals.append(
                    (GM(n_components=k, covariance_type=ct).fit(X).__getattribute__(crit)(X), k)
                )
            kbest = len(best.weights_)
            # must be a minimiser (allowing ties / init noise 1%)
            mn = min(v for v, _ in vals)
            mine = [v for v, k in vals if k == kbest]
            if mine and min(mine) > mn + abs(mn) * 0.01:
                return f"picked K={kbest} ({min(mine):.1f}) but best {crit} {mn:.1f}"
        return True

    sm_bad = {
        "n_components=[]": dict(n_components=[]),
        "n_components=[0]": dict(n_components=[0]),
        "n_components=[-1,2]": dict(n_components=[-1, 2]),
        "n_components=[2.5]": dict(n_components=[2.5]),
        "n_components=['2']": dict(n_components=["2"]),
        "n_components=3": dict(n_components=3),
        "n_components=None": dict(n_components=None),
        "n_components=[301]": dict(n_components=[301]),
        "n_components=range(10**12)": dict(n_components=range(1, 10**12)),
        "n_components=[True]": dict(n_components=[True]),
        "covariance_types=bogus": dict(covariance_types="bogus"),
        "covariance_types=[]": dict(covariance_types=[]),
        "covariance_types=[None]": dict(covariance_types=[None]),
        "criterion=bogus": dict(criterion="bogus"),
        "criterion=None": dict(criterion=None),
        "validation_fraction=0_heldout": dict(criterion="heldout", validation_fraction=0),
        "validation_fraction=1": dict(criterion="heldout", validation_fraction=1),
        "validation_fraction=nan": dict(criterion="heldout", validation_fraction=float("nan")),
        "validation_fraction=-0.1": dict(validation_fraction=-0.1),
        "random_state=-1": dict(random_state=-1),
        "unknown_kw": dict(n_componentz=3),
        "conflicting_kw": dict(covariance_type="diag"),
        "bad_mixture_param": dict(reg_covar=-1),
    }
    for name, kw in sm_bad.items():
        kw = dict(kw)
        kw.setdefault("random_state", 0)
        if "n_components" not in kw:
            kw["n_components"] = [1, 2, 3]
        names = list(kw) + ["n_components", "mixture", "param"]
        case(
            "clust",
            f"select_mixture.{name}",
            lambda kw=kw, names=names: expect_error(lambda: select_mixture(X, **kw), *names),
        )
    sm_ok = {
        "generator": dict(n_components=(k for k in (1, 2, 3))),
        "range": dict(n_components=range(1, 4)),
        "cov_gen": dict(n_components=[1, 2], covariance_types=(c for c in ("full", "diag"))),
        "cov_str": dict(n_components=[1, 2], covariance_types="diag"),
        "dupes": dict(n_components=[2, 2, 1]),
        "np_ints": dict(n_components=np.array([1, 2, 3])),
        "aic": dict(n_components=[1, 2, 3], criterion="aic"),
        "heldout": dict(n_components=[1, 2, 3], criterion="heldout"),
    }
    for name, kw in sm_ok.items():
        kw = dict(kw, random_state=0)

        def run(kw=kw, name=name):
            r = select_mixture(X, **kw)
            ks = sorted({row.get("n_components") for row in r.results_})
            if name in ("generator", "range", "np_ints", "aic", "heldout") and ks != [1, 2, 3]:
                return f"tried K={ks}"
            if name == "cov_gen" and len({row.get("covariance_type") for row in r.results_}) != 2:
                return f"tried {[(row.get('n_components'), row.get('covariance_type')) for row in r.results_]}"
            return sel_check(r)

        case(
            "clust",
            f"select_mixture.ok.{name}",
            lambda run=run: expect_result(run, lambda r: r, "n_components", "covariance_types"),
        )
    for name, bx in {
        "nan_all": np.full((20, 3), np.nan),
        "inf": np.full((20, 3), np.inf),
        "1d": X[:, 0],
        "empty": np.zeros((0, 3)),
        "str": X.astype(str),
        "few": X[:3],
    }.items():
        case(
            "clust",
            f"select_mixture.X.{name}",
            lambda bx=bx: expect_error(
                lambda: select_mixture(bx, [1, 2, 5], random_state=0), "X", "n_components", "sample"
            ),
        )

    # ---------- make_noncircular
    for kind in ("anisotropic", "unequal", "stripes"):
        case(
            "clust",
            f"make_noncircular.ok.{kind}",
            lambda kind=kind: expect_result(
                lambda: make_noncircular(kind, 30, random_state=0),
                lambda r: (
                    True
                    if r[0].shape == (30, 2) and len(r[1]) == 30 and np.isfinite(r[0]).all()
                    else "shape"
                ),
                "kind",
            ),
        )
    mn_bad = {
        "kind=bogus": dict(kind="bogus"),
        "kind=None": dict(kind=None),
        "kind=1": dict(kind=1),
        "kind=ANISOTROPIC": dict(kind="ANISOTROPIC"),
        "n_samples=-1": dict(n_samples=-1),
        "n_samples=0": dict(n_samples=0),
        "n_samples=2.5": dict(n_samples=2.5),
        "n_samples=True": dict(n_samples=True),
        "n_samples=10**20": dict(n_samples=10**20),
        "n_samples=None": dict(n_samples=None),
        "n_samples='5'": dict(n_samples="5"),
        "random_state=-1": dict(random_state=-1),
        "random_state=2**64": dict(random_state=2**64),
        "random_state='a'": dict(random_state="a"),
        "random_state=1.5": dict(random_state=1.5),
    }
    for name, kw in mn_bad.items():
        kw = dict(kw)
        kind = kw.pop("kind", "anisotropic")
        pname = name.split("=")[0]
        case(
            "clust",
            f"make_noncircular.{name}",
            lambda kind=kind, kw=kw, pname=pname: expect_error(
                lambda: make_noncircular(kind, **kw), pname
            ),
        )
    # n_samples=1, 2 (fewer than clusters)
    for n in (1, 2):
        case(
            "clust",
            f"make_noncircular.n_samples={n}",
            lambda n=n: expect_result(
                lambda: make_noncircular("unequal", n, random_state=0),
                lambda r: True if r[0].shape == (n, 2) else f"shape {r[0].shape}",
                "n_samples",
            ),
        )


# ================================================================ image
def image_cases():
    from gmmfast.image import (
        PatchDenoiser,
        average_patches,
        blur,
        blur_matrix,
        estimate_noise_sigma,
        extract_patches,
        gaussian_kernel,
        patch_positions,
        psnr,
        psnr_per_image,
    )

    rng = np.random.RandomState(1)
    imgs = np.clip(rng.rand(20, 16, 16) * 0.2 + np.linspace(0, 0.8, 16)[None, None], 0, 1)
    _pd = {}

    def prior():
        if "p" not in _pd:
            _pd["p"] = PatchDenoiser(
                patch_size=4, n_components=3, max_patches=2000, random_state=0, max_iter=20
            ).fit(imgs)
        return _pd["p"]

    noisy = np.clip(imgs[:3] + rng.randn(3, 16, 16) * 0.1, 0, 1)
    ref_out = {}

    def ref(method):
        if method not in ref_out:
            ref_out[method] = prior().denoise(noisy, 0.1, method=method)
        return ref_out[method]

    # integer images: scaled by dtype and returned in it, or refused
    def int_case(dtype, method):
        def run():
            info = np.iinfo(dtype)
            scaled = np.round(noisy * info.max).astype(dtype)
            out = prior().denoise(scaled, 0.1, method=method)
            if out.dtype != dtype:
                # float output in [0,1] is acceptable if it matches the float result
                f = out.astype(float)
                if f.max() > 1.0 + 1e-6:
                    return f"float output max {f.max()}"
            else:
                f = out.astype(float) / info.max
            e = prior().denoise(scaled.astype(float) / info.max, 0.1, method=method)
            err = np.abs(f - e).max()
            if err > 2.0 / info.max + 1e-6:
                return f"differs from float path by {err:.3g}"
            if np.all(f >= 0.999):
                return "all white"
            return True

        return run

    for dt in (np.uint8, np.uint16):
        for method in ("map", "posterior_mean", "epll"):
            case(
                "image",
                f"denoise.int.{np.dtype(dt).name}.{method}",
                lambda dt=dt, method=method: expect_result(
                    int_case(dt, method), lambda r: r, "images", "dtype", "integer"
                ),
            )
    for dt in (np.int8, np.int32, np.int64, np.uint32, np.uint64):
        case(
            "image",
            f"denoise.int.{np.dtype(dt).name}.map",
            lambda dt=dt: expect_result(
                int_case(dt, "map"), lambda r: r, "images", "dtype", "integer", "range"
            ),
        )

    def camera():
        import skimage.data

        img = skimage.data.camera()[:64, :64]
        out = prior().denoise(img, 0.1, method="map")
        if out.dtype == np.uint8:
            f = out / 255.0
        else:
            f = out
        if np.all(f >= 0.999):
            return "all white"
        return (
            True
            if np.abs(f - img / 255.0).mean() < 0.1
            else f"mean abs diff {np.abs(f - img / 255.0).mean():.3f}"
        )

    case(
        "image",
        "denoise.camera_uint8",
        lambda: expect_result(camera, lambda r: r, "images", "dtype"),
    )
    bad_images = {
        "bool": noisy > 0.5,
        "complex": noisy + 1j,
        "str": noisy.astype(str),
        "object": noisy.astype(object),
        "nan": np.where(np.arange(noisy.size).reshape(noisy.shape) == 7, np.nan, noisy),
        "inf": np.where(np.arange(noisy.size).reshape(noisy.shape) == 7, np.inf, noisy),
        "1d": noisy.ravel(),
        "4d_rgb": np.stack([noisy] * 3, -1)[..., None],
        "smaller_than_patch": noisy[:, :3, :3],
        "empty": noisy[:0],
        "zero_width": noisy[:, :, :0],
        "none": None,
        "datetime": np.zeros((3, 16, 16), "datetime64[s]"),
        "float_255": noisy * 255,
        "negative": noisy - 1,
        "masked": np.ma.masked_array(noisy, mask=noisy > 0.9),
    }
    for name, bi in bad_images.items():
        names = ("images", "image", "dtype", "patch", "finite", "nan", "range", "mask", "shape")
        if name in ("float_255", "negative"):
            # out-of-[0,1] floats: refuse naming the range, or denoise without clipping them into white/black
            def run(bi=bi):
                out = prior().denoise(bi, 0.1, method="map")
                if np.all(out >= 0.999) or np.all(out <= 0.001):
                    return f"constant output {out.min()}..{out.max()}"
                return True

            case(
                "image",
                f"denoise.bad.{name}",
                lambda run=run, names=names: expect_result(run, lambda r: r, *names),
            )
        elif name == "bool":
            case(
                "image",
                f"denoise.bad.{name}",
                lambda bi=bi, names=names: expect_error(
                    lambda: prior().denoise(bi, 0.1, method="map"),
                    *names,
                    accept=lambda r: True if r.shape == bi.shape else "shape",
                ),
            )
        else:
            case(
                "image",
                f"denoise.bad.{name}",
                lambda bi=bi, names=names: expect_error(
                    lambda: prior().denoise(bi, 0.1, method="map"), *names
                ),
            )
    for s in (-1, 0, float("nan"), float("inf"), "a", 1e300, True):
        case(
            "image",
            f"denoise.sigma={s!r}",
            lambda s=s: expect_error(
                lambda: prior().denoise(noisy, s, method="map"),
                "sigma",
                accept=(lambda r: True if np.isfinite(r).all() else "nonfinite")
                if s in (0,)
                else None,
            ),
        )
    for meth in ("bogus", None, 3, "MAP"):
        case(
            "image",
            f"denoise.method={meth!r}",
            lambda meth=meth: expect_error(
                lambda: prior().denoise(noisy, 0.1, method=meth), "method"
            ),
        )
    for betas in ([], [-1], [float("nan")], "abc", [0]):
        case(
            "image",
            f"denoise.betas={betas!r}",
            lambda betas=betas: expect_error(
                lambda: prior().denoise(noisy, 0.1, method="epll", betas=betas), "betas"
            ),
        )
    case(
        "image",
        "denoise.betas=generator",
        lambda: expect_result(
            lambda: prior().denoise(noisy, 0.1, method="epll", betas=(b for b in (16.0, 32.0))),
            lambda r: (
                True
                if np.allclose(r, prior().denoise(noisy, 0.1, method="epll", betas=[16.0, 32.0]))
                else "generator differs from list"
            ),
            "betas",
        ),
    )
    case(
        "image",
        "denoise.unfitted",
        lambda: expect_error(lambda: PatchDenoiser().denoise(noisy, 0.1), "fit"),
    )
    # layouts equal to contiguous float
    ro = noisy.copy()
    ro.setflags(write=False)
    for name, im in {
        "fortran": np.asfortranarray(noisy),
        "readonly": ro,
        "strided": np.repeat(noisy, 2, 1)[:, ::2],
        "list": noisy.tolist(),
        "float32": noisy.astype(np.float32),
        "single_2d": noisy[0],
    }.items():

        def run(im=im, name=name):
            out = prior().denoise(im, 0.1, method="map")
            e = ref("map")
            if name == "single_2d":
                e = e[0]
            tol = 1e-4 if name == "float32" else 1e-8
            return (
                True
                if np.shape(out) == np.shape(e) and np.allclose(out, e, atol=tol)
                else f"differs by {np.abs(np.asarray(out, float) - e).max() if np.shape(out) == np.shape(e) else np.shape(out)}"
            )

        case(
            "image",
            f"denoise.layout.{name}",
            lambda run=run: expect_result(run, lambda r: r, "images"),
        )

    def not_modified():
        a = noisy.copy()
        prior().denoise(a, 0.1, method="epll")
        return (OK, "unchanged") if np.array_equal(a, noisy) else (WRONG, "images modified")

    case("image", "denoise.never_modified", not_modified)
    # constructor / fit parameters
    pd_bad = {
        "patch_size": [0, -1, 2.5, 100, None, "8"],
        "n_components": [0, -1, 10**9],
        "stride": [0, -1, 2.5, 100],
        "reg_covar": [-1, float("nan")],
        "max_patches": [0, -1, 2.5],
        "max_iter": [0, -1],
        "tol": [-1, float("nan")],
        "epll_betas": [[], [-1.0], "a"],
        "epll_fidelity": [-1, float("nan")],
        "epll_patch_step": ["bogus"],
        "epll_init": ["bogus"],
        "cg_iter": [0, -1],
        "blur_boundary": ["bogus"],
        "clip": [(1, 0), (0,), "a", (float("nan"), 1)],
        "dtype": [np.int8, "bogus"],
        "covariance_type": ["bogus"],
    }
    for p, vals in pd_bad.items():
        for v in vals:

            def f(p=p, v=v):
                d = PatchDenoiser(
                    **{
                        "patch_size": 4,
                        "n_components": 3,
                        "max_patches": 500,
                        "random_state": 0,
                        "max_iter": 5,
                        p: v,
                    }
                )
                d.fit(imgs)
                return d.denoise(
                    noisy, 0.1, method="epll" if p.startswith(("epll", "cg")) else "map"
                )

            acc = (lambda r: True) if (p, v) == ("max_iter", 0) else None
            case(
                "image",
                f"PatchDenoiser.param.{p}={v!r}"[:80],
                lambda f=f, p=p, acc=acc: expect_error(f, p, accept=acc),
            )
    fit_bad = {
        "nan": np.full((3, 16, 16), np.nan),
        "smaller": imgs[:, :2, :2],
        "empty": imgs[:0],
        "1d": imgs.ravel(),
        "str": imgs.astype(str),
        "complex": imgs + 1j,
        "int32": (imgs * 100).astype(np.int32),
    }
    for name, fi in fit_bad.items():
        case(
            "image",
            f"PatchDenoiser.fit.{name}",
            lambda fi=fi: expect_error(
                lambda: PatchDenoiser(
                    patch_size=4, n_components=3, max_patches=500, random_state=0
                ).fit(fi),
                "images",
                "image",
                "patch",
                "finite",
                "nan",
                "dtype",
                "range",
                "integer",
            ),
        )
    # helpers
    helpers = {
        "psnr.shape": lambda: psnr(noisy, noisy[:2]),
        "psnr.data_range=0": lambda: psnr(noisy, imgs[:3], data_range=0),
        "psnr.data_range=-1": lambda: psnr(noisy, imgs[:3], data_range=-1),
        "psnr.data_range=nan": lambda: psnr(noisy, imgs[:3], data_range=float("nan")),
        "psnr.nan": lambda: psnr(np.full((4, 4), np.nan), np.zeros((4, 4))),
        "psnr.empty": lambda: psnr(np.zeros((0, 4)), np.zeros((0, 4))),
        "psnr.str": lambda: psnr(noisy.astype(str), noisy),
        "psnr_per_image.1d": lambda: psnr_per_image(noisy.ravel(), noisy.ravel()),
        "psnr.int_mixed_dtypes": lambda: psnr(
            np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint16)
        ),
        "extract.patch_size=0": lambda: extract_patches(noisy, 0),
        "extract.patch_size=-1": lambda: extract_patches(noisy, -1),
        "extract.patch_size=100": lambda: extract_patches(noisy, 100),
        "extract.stride=0": lambda: extract_patches(noisy, 4, 0),
        "extract.stride=2.5": lambda: extract_patches(noisy, 4, 2.5),
        "extract.out_shape": lambda: extract_patches(noisy, 4, out=np.zeros((3, 3))),
        "extract.out_dtype": lambda: extract_patches(
            noisy, 4, out=np.zeros((3 * 13 * 13, 16), np.int32)
        ),
        "extract.out_readonly": lambda: extract_patches(
            noisy, 4, out=_ro(np.zeros((3 * 13 * 13, 16)))
        ),
        "extract.out_fortran": lambda: extract_patches(
            noisy, 4, out=np.zeros((3 * 13 * 13, 16), order="F")
        ),
        "extract.out_is_input": lambda: extract_patches(
            noisy.reshape(-1, 16)[: 3 * 13 * 13].copy(), 4
        ),
        "extract.str": lambda: extract_patches(noisy.astype(str), 4),
        "extract.complex": lambda: extract_patches(noisy + 1j, 4),
        "average.wrong_count": lambda: average_patches(np.zeros((10, 16)), (16, 16), 4),
        "average.patch_width": lambda: average_patches(np.zeros((169, 15)), (16, 16), 4),
        "average.image_shape_neg": lambda: average_patches(np.zeros((169, 16)), (-16, 16), 4),
        "average.image_shape_str": lambda: average_patches(np.zeros((169, 16)), "16x16", 4),
        "average.weights_shape": lambda: average_patches(
            np.zeros((169, 16)), (16, 16), 4, weights=np.ones(3)
        ),
        "average.weights_neg": lambda: average_patches(
            np.zeros((169, 16)), (16, 16), 4, weights=-np.ones(169)
        ),
        "average.weights_zero": lambda: average_patches(
            np.ones((169, 16)), (16, 16), 4, weights=np.zeros(169)
        ),
        "average.nan": lambda: average_patches(np.full((169, 16), np.nan), (16, 16), 4),
        "kernel.sigma=0": lambda: gaussian_kernel(0),
        "kernel.sigma=-1": lambda: gaussian_kernel(-1),
        "kernel.sigma=nan": lambda: gaussian_kernel(float("nan")),
        "kernel.sigma=inf": lambda: gaussian_kernel(float("inf")),
        "kernel.sigma=1e9": lambda: gaussian_kernel(1e9),
        "kernel.radius=10**9": lambda: gaussian_kernel(1.0, 10**9),
        "kernel.radius=-1": lambda: gaussian_kernel(1.0, -1),
        "kernel.radius=2.5": lambda: gaussian_kernel(1.0, 2.5),
        "blur.kernel_nan": lambda: blur(noisy, np.full((3, 3), np.nan)),
        "blur.kernel_even": lambda: blur(noisy, np.ones((2, 2)) / 4),
        "blur.kernel_1d": lambda: blur(noisy, np.ones(3) / 3),
        "blur.kernel_huge": lambda: blur(noisy, np.ones((101, 101)) / 101**2),
        "blur.kernel_zero": lambda: blur(noisy, np.zeros((3, 3))),
        "blur.images_str": lambda: blur(noisy.astype(str), np.ones((3, 3)) / 9),
        "blur_matrix.patch_size=10**5": lambda: blur_matrix(gaussian_kernel(1.0), 10**5),
        "blur_matrix.patch_size=0": lambda: blur_matrix(gaussian_kernel(1.0), 0),
        "blur_matrix.mode=bogus": lambda: blur_matrix(gaussian_kernel(1.0), 4, "bogus"),
        "blur_matrix.kernel_list": lambda: blur_matrix([[1.0]], 4, "bogus"),
        "noise_sigma.tiny": lambda: estimate_noise_sigma(np.zeros((1, 1))),
        "noise_sigma.nan": lambda: estimate_noise_sigma(np.full((8, 8), np.nan)),
        "noise_sigma.empty": lambda: estimate_noise_sigma(np.zeros((0, 8, 8))),
        "noise_sigma.str": lambda: estimate_noise_sigma(np.full((8, 8), "a")),
        "positions.stride=0": lambda: patch_positions(16, 4, 0),
        "positions.patch>len": lambda: patch_positions(3, 4, 1),
        "positions.neg": lambda: patch_positions(-16, 4, 1),
    }
    hnames = (
        "clean",
        "restored",
        "data_range",
        "patch_size",
        "stride",
        "out",
        "patches",
        "image_shape",
        "weights",
        "sigma",
        "radius",
        "kernel",
        "images",
        "mode",
        "length",
        "shape",
        "finite",
        "nan",
        "dtype",
        "image",
        "sigma_px",
    )
    accept_ok = {
        "kernel.sigma=0": lambda r: (
            True if np.isclose(np.sum(r), 1) else "kernel does not sum to 1"
        ),
        "psnr.int_mixed_dtypes": lambda r: True if r == np.inf else f"{r}",
        "blur.kernel_zero": lambda r: True if not np.any(r) else "nonzero",
        "extract.out_fortran": lambda r: (
            True if np.allclose(r, extract_patches(noisy, 4)) else "out (Fortran) wrong"
        ),
        "extract.out_is_input": lambda r: True,
        "average.weights_zero": lambda r: True if np.all(np.isfinite(r)) else "nonfinite output",
        "blur.kernel_even": lambda r: True if np.isfinite(r).all() else "nonfinite",
        "blur.kernel_huge": lambda r: True if np.isfinite(r).all() else "nonfinite",
        "positions.patch>len": None,
    }

    def memguard(fn):
        def run():
            tracemalloc.start()
            try:
                r = fn()
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            if peak > BOMB_BYTES:
                raise Verdict(BOMB, f"peak {peak / 2**20:.0f} MiB")
            return r

        return run

    for name, fn in helpers.items():
        case(
            "image",
            f"helper.{name}",
            lambda fn=fn, name=name: expect_error(
                memguard(fn), *hnames, accept=accept_ok.get(name)
            ),
        )


def _ro(a):
    a.setflags(write=False)
    return a


# ================================================================ vae
def vae_cases():
    import torch

    torch.set_num_threads(1)
    from gmmfast.datasets import load_mnist_sample
    from gmmfast.vae import ConvVAE, DeepClustering, VaDE, check_images

    Xm, ym, _, _ = load_mnist_sample()
    ims = Xm[:300].reshape(-1, 28, 28)
    ym[:300]

    def DC(**kw):
        base = dict(
            n_clusters=3,
            hidden_sizes=(16, 8),
            embedding_size=4,
            manifold=None,
            epochs=1,
            batch_size=64,
            gmm_n_init=1,
            random_state=0,
            patience=1,
        )
        base.update(kw)
        return DeepClustering(**base)

    def CV(**kw):
        base = dict(
            latent_dim=2,
            architecture="dense",
            dense_sizes=(16, 8),
            epochs=1,
            batch_size=64,
            random_state=0,
            patience=1,
        )
        base.update(kw)
        return ConvVAE(**base)

    def count_linear(net):
        return sum(1 for m in net.modules() if isinstance(m, torch.nn.Linear))

    def dc_gen():
        a = DC(hidden_sizes=(h for h in (16, 8))).fit(ims)
        b = DC(hidden_sizes=(16, 8)).fit(ims)
        na = sum(p.numel() for p in _params(a))
        nb = sum(p.numel() for p in _params(b))
        return True if na == nb and na > 0 else f"parameters {na} vs {nb} with the tuple"

    case(
        "vae",
        "DC.hidden_sizes=generator",
        lambda: expect_result(dc_gen, lambda r: r, "hidden_sizes"),
    )

    def cv_gen(p, v, ref):
        def run():
            a = CV(**{p: v}).fit(ims)
            b = CV(**{p: ref}).fit(ims)
            na = sum(q.numel() for q in _params(a))
            nb = sum(q.numel() for q in _params(b))
            return True if na == nb and na > 0 else f"parameters {na} vs {nb}"

        return run

    case(
        "vae",
        "CV.dense_sizes=generator",
        lambda: expect_result(
            cv_gen("dense_sizes", (h for h in (16, 8)), (16, 8)), lambda r: r, "dense_sizes"
        ),
    )
    dc_bad = {
        "hidden_sizes": [(), (0,), (-1,), (2.5,), (10**9,), "16", None, (16, None)],
        "embedding_size": [0, -1, 10**9, 2.5],
        "n_clusters": [0, -1, 1000, 2.5, None],
        "manifold": ["bogus", 3],
        "manifold_size": [0, -1],
        "n_neighbors": [0, -1, 10**6],
        "covariance_type": ["bogus"],
        "gmm_n_init": [0, -1],
        "learning_rate": [0, -1, float("nan"), float("inf")],
        "batch_size": [0, -1, 2.5],
        "epochs": [-1, 2.5, 10**12],
        "validation_fraction": [-0.1, 1, 1.5, float("nan")],
        "lr_factor": [0, 1, 2, -1],
        "lr_patience": [-1],
        "patience": [-1],
        "rotation": [-1, float("nan"), 1e9],
        "flip": ["yes"],
        "input_noise": [-1, float("nan")],
        "device": ["bogus", "cuda:99", 3],
        "n_threads": [0, -(10**6), 2.5],
        "random_state": [-1, "a"],
    }
    for p, vals in dc_bad.items():
        for v in vals:
            extra = {"manifold": "umap"} if p in ("n_neighbors", "manifold_size") else {}
            # valid: no hidden layer (a linear encoder), early stopping ends 1e12 epochs, rotations wrap
            acc = (
                (lambda m: True)
                if (p, v) in (("hidden_sizes", ()), ("epochs", 10**12), ("rotation", 1e9))
                else None
            )
            case(
                "vae",
                f"DC.param.{p}={v!r}"[:80],
                lambda p=p, v=v, extra=extra, acc=acc: expect_error(
                    memg(lambda: DC(**extra, **{p: v}).fit(ims)), p, "clusters", accept=acc
                ),
            )
    cv_bad = {
        "latent_dim": [0, -1, 10**8, 2.5],
        "architecture": ["bogus", None],
        "dense_sizes": [(), (0,), (10**9,), "16"],
        "channels": [(0,), (10**9,)],
        "hidden_units": [0, 10**9],
        "dropout": [-0.1, 1, 1.5],
        "beta": [-1, float("nan")],
        "strides": [(0,), (1, 2, 3, 4, 5, 6, 7)],
    }
    for p, vals in cv_bad.items():
        for v in vals:
            arch = (
                {"architecture": "conv", "channels": (4, 4), "hidden_units": 8}
                if p in ("channels", "hidden_units", "strides")
                else {}
            )
            if p == "architecture":
                arch = {}
            case(
                "vae",
                f"CV.param.{p}={v!r}"[:80],
                lambda p=p, v=v, arch=arch: expect_error(
                    memg(lambda: CV(**{**arch, p: v}).fit(ims)), p
                ),
            )
    # conv-only options given with the dense architecture: refused (as the command does) or documented as ignored
    for p, v in (("channels", (4, 4)), ("hidden_units", 10**8), ("strides", (2, 2))):
        case(
            "vae",
            f"CV.dense_with.{p}",
            lambda p=p, v=v: expect_error(
                memg(lambda: CV(**{p: v}).fit(ims)), p, "architecture", "dense", "conv"
            ),
        )
    # images
    img_bad = {
        "nan": np.where(np.arange(ims.size).reshape(ims.shape) == 5, np.nan, ims),
        "inf": np.where(np.arange(ims.size).reshape(ims.shape) == 5, np.inf, ims),
        "range_255": ims * 255,
        "negative": ims - 1,
        "shape_27": ims[:, :27, :27],
        "shape_flat_783": ims.reshape(300, -1)[:, :783],
        "1d": ims.ravel(),
        "str": ims.astype(str),
        "complex": ims + 1j,
        "empty": ims[:0],
        "one": ims[:1],
        "object": ims.astype(object),
        "none": None,
        "int32": (ims * 255).astype(np.int32),
    }
    for name, bi in img_bad.items():
        names = (
            "images",
            "image",
            "finite",
            "nan",
            "range",
            "shape",
            "dtype",
            "pixel",
            "sample",
            "integer",
        )
        for est in ("DC", "CV"):
            fn = (lambda bi=bi: DC().fit(bi)) if est == "DC" else (lambda bi=bi: CV().fit(bi))
            # the dense networks take any image size
            acc = (lambda m: True) if name == "shape_27" else None
            case(
                "vae",
                f"{est}.fit.{name}",
                lambda fn=fn, names=names, acc=acc: expect_error(fn, *names, accept=acc),
            )
    for name in ("uint8", "flat_784", "float32_list"):
        bi = {
            "uint8": np.round(ims * 255).astype(np.uint8),
            "flat_784": ims.reshape(300, -1),
            "float32_list": ims[:100].tolist(),
        }[name]
        case(
            "vae",
            f"check_images.ok.{name}",
            lambda bi=bi: expect_result(
                lambda: check_images(bi),
                lambda r: (
                    True
                    if r.shape[1:] in ((28, 28), (1, 28, 28), (784,)) and np.nanmax(r) <= 1
                    else f"shape {r.shape}, max {np.nanmax(r)}"
                ),
                "images",
            ),
        )
    # VaDE misuse
    vade_bad = {
        "vae=object": lambda: VaDE(vae=object(), n_clusters=3, epochs=1).fit(ims),
        "vae=str": lambda: VaDE(vae="conv", n_clusters=3, epochs=1).fit(ims),
        "n_clusters=0": lambda: VaDE(vae=CV(), n_clusters=0, epochs=1).fit(ims),
        "n_clusters=1000": lambda: VaDE(vae=CV(), n_clusters=1000, epochs=1, gmm_n_init=1).fit(ims),
        "gmm_reg_covar=-1": lambda: VaDE(vae=CV(), n_clusters=3, epochs=1, gmm_reg_covar=-1).fit(
            ims
        ),
        "beta=-1": lambda: VaDE(vae=CV(), n_clusters=3, epochs=1, beta=-1).fit(ims),
        "learn_weights=str": lambda: VaDE(vae=CV(), n_clusters=3, epochs=1, learn_weights="no").fit(
            ims
        ),
    }
    for name, fn in vade_bad.items():
        p = name.split("=")[0]
        case("vae", f"VaDE.{name}", lambda fn=fn, p=p: expect_error(fn, p, "needed"))

    def vade_ok():
        v = VaDE(vae=CV(), n_clusters=3, epochs=1, gmm_n_init=1, random_state=0, batch_size=64).fit(
            ims
        )
        p = v.predict(ims[:20])
        return True if len(p) == 20 and set(np.unique(p)) <= {0, 1, 2} else f"{p}"

    case("vae", "VaDE.ok", lambda: expect_result(vade_ok, lambda r: r))
    # fitted DC: methods with bad input; save/load tamper
    _dc = {}

    def fitted():
        if "m" not in _dc:
            _dc["m"] = DC().fit(ims)
        return _dc["m"]

    for meth in ("predict", "predict_proba", "transform", "encode"):
        for name, bi in (
            ("shape_27", ims[:5, :27, :27]),
            ("nan", img_bad["nan"][:5]),
            ("empty", ims[:0]),
            ("str", ims[:5].astype(str)),
        ):
            if name == "empty":
                case(
                    "vae",
                    f"DC.{meth}.{name}",
                    lambda meth=meth, bi=bi: expect_result(
                        lambda: getattr(fitted(), meth)(bi),
                        lambda r: True if len(r) == 0 else f"len {len(r)}",
                        "images",
                    ),
                )
            else:
                case(
                    "vae",
                    f"DC.{meth}.{name}",
                    lambda meth=meth, bi=bi: expect_error(
                        lambda: getattr(fitted(), meth)(bi),
                        "images",
                        "image",
                        "shape",
                        "finite",
                        "nan",
                        "dtype",
                    ),
                )
    case("vae", "DC.unfitted.predict", lambda: expect_error(lambda: DC().predict(ims), "fit"))
    case("vae", "CV.unfitted.encode", lambda: expect_error(lambda: CV().encode(ims), "fit"))
    for n in (0, -1, 2.5, 10**9):
        case(
            "vae",
            f"CV.sample.n={n!r}",
            lambda n=n: expect_error(memg(lambda: CV().fit(ims).sample(n)), "n_samples", "n"),
        )

    def dc_roundtrip(tamper):
        def run():
            d = tempfile.mkdtemp(dir=tmpdir())
            p = os.path.join(d, "dc.npz")
            m = fitted()
            m.save(p)
            if tamper == "none":
                m2 = DeepClustering.load(p)
                a, b = m.predict(ims[:50]), m2.predict(ims[:50])
                return (
                    (OK, "roundtrip equal")
                    if np.array_equal(a, b)
                    else (WRONG, "loaded predicts differently")
                )
            raw_bytes = open(p, "rb").read()
            if tamper == "truncate":
                open(p, "wb").write(raw_bytes[: len(raw_bytes) // 2])
            elif tamper == "flip":
                i = len(raw_bytes) // 3
                open(p, "wb").write(
                    raw_bytes[:i] + bytes([raw_bytes[i] ^ 0xFF]) + raw_bytes[i + 1 :]
                )
            elif tamper.startswith("key:"):
                k = tamper[4:]
                z = dict(np.load(p, allow_pickle=False))
                tk = [kk for kk in z if k in kk]
                if not tk:
                    return OK, f"(no key {k}; keys {list(z)[:8]})"
                for kk in tk:
                    z[kk] = (
                        np.full_like(z[kk], np.nan) if z[kk].dtype.kind == "f" else z[kk][..., :0]
                    )
                with open(p, "wb") as fh:
                    np.savez(fh, **z)
            elif tamper == "gm_file":
                GM().fit(X).save(p)
            try:
                m2 = DeepClustering.load(p)
            except Exception as e:
                return judge_error(e, [p, "dc.npz"])
            try:
                m2.predict(ims[:5])
            except Exception as e:
                return WRONG, f"tampered file loaded then failed later: {_short(e)}"
            return WRONG, "tampered file loaded"

        return run

    for t in ("none", "truncate", "flip", "gm_file", "key:mean", "key:weight", "key:cov", "key:0"):
        case("vae", f"DC.file.{t}", dc_roundtrip(t))

    def cv_ptfile(tamper):
        def run():
            d = tempfile.mkdtemp(dir=tmpdir())
            p = os.path.join(d, "v.pt")
            m = CV().fit(ims)
            m.save(p)
            rb = open(p, "rb").read()
            if tamper == "truncate":
                open(p, "wb").write(rb[: len(rb) // 2])
            elif tamper == "text":
                open(p, "wb").write(b"hello")
            elif tamper == "npz":
                GM().fit(X).save(p + ".npz")
                os.replace(p + ".npz", p)
            try:
                ConvVAE.load(p)
            except Exception as e:
                return judge_error(e, [p, "v.pt"])
            return WRONG, "damaged file loaded"

        return run

    for t in ("truncate", "text", "npz"):
        case("vae", f"CV.file.{t}", cv_ptfile(t))


def _params(m):
    import torch

    out = []
    for v in vars(m).values():
        if isinstance(v, torch.nn.Module):
            out.extend(v.parameters())
    return out


def memg(fn):
    def run():
        tracemalloc.start()
        try:
            try:
                r = fn()
            except BaseException:
                _, peak = tracemalloc.get_traced_memory()
                if peak > BOMB_BYTES * 4:
                    raise Verdict(BOMB, f"peak {peak / 2**20:.0f} MiB before the error")
                raise
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        if peak > BOMB_BYTES * 4:
            raise Verdict(BOMB, f"peak {peak / 2**20:.0f} MiB")
        return r

    return run


# ================================================================ command
def cli_cases():
    from gmmfast.datasets import load_mnist_sample

    Xm, ym, Xt, yt = load_mnist_sample()
    base = os.path.join(tmpdir(), "cli")
    os.makedirs(base, exist_ok=True)
    t = os.path.join(base, "t.npz")
    np.savez(
        t, images=np.round(Xm[:300].reshape(-1, 28, 28) * 255).astype(np.uint8), labels=ym[:300]
    )
    te = os.path.join(base, "te.npz")
    np.savez(
        te, images=np.round(Xt[:50].reshape(-1, 28, 28) * 255).astype(np.uint8), labels=yt[:50]
    )
    nolab = os.path.join(base, "nolab.npz")
    np.savez(nolab, images=Xt[:50].reshape(-1, 28, 28))
    nan_npz = os.path.join(base, "nan.npz")
    a = Xt[:50].reshape(-1, 28, 28).copy()
    a[:, 3, 3] = np.nan
    np.savez(nan_npz, images=a, labels=yt[:50])
    inf_npz = os.path.join(base, "inf.npz")
    a = Xt[:50].reshape(-1, 28, 28).copy()
    a[:, 3, 3] = np.inf
    np.savez(inf_npz, images=a, labels=yt[:50])
    badkeys = os.path.join(base, "badkeys.npz")
    np.savez(badkeys, foo=np.zeros(3))
    wrongshape = os.path.join(base, "ws.npz")
    np.savez(wrongshape, images=np.zeros((50, 27, 27)), labels=np.zeros(50, int))
    mismatch = os.path.join(base, "mm.npz")
    np.savez(mismatch, images=Xt[:50].reshape(-1, 28, 28), labels=yt[:49])
    objnpz = os.path.join(base, "obj.npz")
    np.savez(objnpz, images=np.array([None] * 50, dtype=object), labels=yt[:50])
    strlab = os.path.join(base, "strlab.npz")
    np.savez(strlab, images=Xt[:50].reshape(-1, 28, 28), labels=yt[:50].astype(str))
    range255 = os.path.join(base, "r255.npz")
    np.savez(range255, images=Xt[:50].reshape(-1, 28, 28) * 255, labels=yt[:50])
    empty = os.path.join(base, "empty.npz")
    np.savez(empty, images=np.zeros((0, 28, 28)), labels=np.zeros(0, int))
    trunc = os.path.join(base, "trunc.npz")
    open(trunc, "wb").write(open(t, "rb").read()[:500])
    txt = os.path.join(base, "notes.txt")
    open(txt, "w").write("hi\n")
    adir = os.path.join(base, "adir")
    os.makedirs(adir, exist_ok=True)
    # a saved classifier and a denoiser to reuse
    clf_model = os.path.join(base, "clf.npz")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gmmfast",
            "classify",
            "--train",
            t,
            "--test",
            te,
            "--save-model",
            clf_model,
            "--n-components",
            "1",
            "--max-iter",
            "5",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0:
        print("fixture classify failed:", r.stderr, file=sys.stderr)
    dn_model = os.path.join(base, "dn.npz")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gmmfast",
            "denoise",
            "--train",
            t,
            "--images",
            te,
            "--limit",
            "2",
            "--sigma",
            "0.1",
            "--add-noise",
            "--save-model",
            dn_model,
            "--n-components",
            "2",
            "--max-patches",
            "500",
            "--max-iter",
            "3",
            "--method",
            "map",
            "--patch-size",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0:
        print("fixture denoise failed:", r.stderr, file=sys.stderr)
    vae_model = os.path.join(base, "vae.pt")
    vae_gmm = os.path.join(base, "vae_gmm.npz")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gmmfast",
            "vae",
            "train",
            "--train",
            t,
            "--architecture",
            "dense",
            "--epochs",
            "1",
            "--save-model",
            vae_model,
            "--save-gmm",
            vae_gmm,
            "--device",
            "cpu",
            "--n-threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0:
        print("fixture vae failed:", r.stderr, file=sys.stderr)
    clf_tampered = os.path.join(base, "clf_t.npz")
    if os.path.exists(clf_model):
        z = dict(np.load(clf_model))
        for k in z:
            if z[k].dtype.kind == "f" and z[k].size > 1:
                z[k] = np.full_like(z[k], np.nan)
                break
        np.savez(clf_tampered, **z)

    def run_cli(args, expect_rc=2, protect=(), must_not_exist=(), timeout=240, accept_zero=None):
        def run():
            work = tempfile.mkdtemp(dir=base)
            argv = [a.replace("@W", work) for a in args]
            for p in must_not_exist:
                p = p.replace("@W", work)
                if os.path.exists(p):
                    os.remove(p)
            prot = {}
            for p in protect:
                p = p.replace("@W", work)
                if not os.path.exists(p) and not os.path.islink(p):
                    with open(p, "wb") as fh:
                        fh.write(b"precious " + p.encode())
                rp = os.path.realpath(p)
                prot[p] = (
                    hashlib.sha256(open(rp, "rb").read()).hexdigest()
                    if os.path.isfile(rp)
                    else None
                )
            env = dict(os.environ, PYTHONFAULTHANDLER="1")
            try:
                r = subprocess.run(
                    [sys.executable, "-m", "gmmfast"] + argv,
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    env=env,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                return HANG, f"command ran past {timeout}s"
            err = r.stderr.strip()
            lines = [ln for ln in err.splitlines() if ln.strip()]
            # warnings lines are not errors, but count them
            for p, h in prot.items():
                rp = os.path.realpath(p)
                h2 = (
                    hashlib.sha256(open(rp, "rb").read()).hexdigest()
                    if os.path.isfile(rp)
                    else None
                )
                if h is not None and h2 != h and r.returncode != 0:
                    return (
                        DATA_LOSS,
                        f"rc={r.returncode}: {os.path.basename(p)} changed; stderr: {err[-200:]}",
                    )
                if h is not None and h2 != h and r.returncode == 0 and expect_rc == 2:
                    return DATA_LOSS, f"rc=0 and {os.path.basename(p)} overwritten"
                if h is not None and h2 is None:
                    return DATA_LOSS, f"rc={r.returncode}: {os.path.basename(p)} removed"
            for p in must_not_exist:
                p = p.replace("@W", work)
                if r.returncode != 0 and os.path.exists(p):
                    return WRONG, f"rc={r.returncode} but output {os.path.basename(p)} was written"
            if r.returncode < 0 or r.returncode in (134, 139):
                return CRASH, f"rc={r.returncode} {err[-300:]}"
            if "Traceback" in err:
                return TRACEBACK, err[-400:].replace("\n", " | ")
            if r.returncode == expect_rc:
                if expect_rc == 2 and len(lines) != 1:
                    return UNCLEAR, f"exit 2 with {len(lines)} stderr lines: {err[:300]}"
                return OK, lines[-1][:250] if lines else "ok"
            if r.returncode == 0 and accept_zero is not None:
                v = accept_zero(work, r)
                return (OK, "accepted, verified") if v is True else (WRONG, f"rc=0: {v}")
            if r.returncode == 0:
                return (
                    WRONG,
                    f"exit 0 where {expect_rc} expected; stdout: {r.stdout.strip()[-200:]}",
                )
            if r.returncode == 1 and expect_rc == 2:
                return UNCLEAR, f"exit 1 on bad input: {err[-250:]}"
            return UNCLEAR, f"rc={r.returncode}: {err[-250:]}"

        return run

    def C(cid, args, **kw):
        return case("cli", cid, run_cli(args, **kw))

    # top level
    C("noargs", [])
    C("bogus_command", ["bogus"])
    C("version", ["--version"], expect_rc=0)
    for sub in (
        ["demo"],
        ["classify"],
        ["inpaint"],
        ["denoise"],
        ["bench"],
        ["vae"],
        ["vae", "train"],
        ["vae", "reconstruct"],
        ["vae", "classify"],
        ["vae", "sample"],
    ):
        C("help." + ".".join(sub), sub + ["--help"], expect_rc=0)
    C("vae.noargs", ["vae"])
    # classify
    cl = ["classify", "--n-components", "1", "--max-iter", "3"]

    def Cl(cid, extra, **kw):
        return C("classify." + cid, cl + extra, **kw)

    Cl("test_missing", ["--train", t, "--test", os.path.join(base, "nope.npz")])
    Cl("test_dir", ["--train", t, "--test", adir])
    Cl("test_txt", ["--train", t, "--test", txt])
    Cl("test_truncated", ["--train", t, "--test", trunc])
    Cl("train_badkeys", ["--train", badkeys, "--test", te])
    Cl("train_wrongshape", ["--train", wrongshape, "--test", te])
    Cl("train_mismatch", ["--train", mismatch, "--test", te])
    Cl("train_obj", ["--train", objnpz, "--test", te])
    Cl("train_empty", ["--train", empty, "--test", te])
    Cl("train_inf", ["--train", inf_npz, "--test", te])
    Cl("train_r255", ["--train", range255, "--test", te])
    Cl(
        "train_strlabels",
        ["--train", strlab, "--test", te],
        expect_rc=2,
        accept_zero=lambda w, r: True,
    )
    Cl("train_nolabels", ["--train", nolab, "--test", te])
    Cl("no_model_no_train", ["--test", te])
    Cl("model_and_train", ["--model", clf_model, "--train", t, "--test", te])
    Cl("model_tampered", ["--model", clf_tampered, "--test", te])
    Cl("model_is_denoiser", ["--model", dn_model, "--test", te])
    Cl("model_is_vae_pt", ["--model", vae_model, "--test", te])
    Cl("model_txt", ["--model", txt, "--test", te])
    Cl("model_dir", ["--model", adir, "--test", te])
    Cl("test_wrongshape_for_model", ["--model", clf_model, "--test", wrongshape])
    for opt, vals in {
        "--n-components": ["0", "-1", "a", "1,,2", "1,1e9", "1,10**9", "999999999", "2.5", ""],
        "--reg-covar": ["-1", "nan", "inf", "x"],
        "--max-iter": ["0", "-1", "1e9"],
        "--fraction": ["2", "-0.1", "nan", "1", "0"],
        "--seed": ["-1", "99999999999999999999999", "x"],
        "--n-threads": ["0", "-1000", "x", "100000"],
    }.items():
        for v in vals:
            extra = ["--mask", "random"] if opt == "--fraction" else []
            ok0 = (lambda w, r: True) if (opt, v) == ("--fraction", "0") else None
            Cl(
                f"{opt}={v}",
                ["--train", t, "--test", te, opt, v] + extra,
                must_not_exist=("@W/o.npz",),
                accept_zero=ok0,
            )
    Cl(
        "fraction_without_random_mask",
        ["--train", t, "--test", te, "--fraction", "0.3", "--mask", "top"],
    )
    Cl("shifts_train_with_model", ["--model", clf_model, "--test", te, "--shifts", "train"])
    Cl(
        "mask_nan_no_nans",
        ["--model", clf_model, "--test", te, "--mask", "nan"],
        expect_rc=2,
        accept_zero=lambda w, r: "accuracy" in r.stdout.lower() or True,
    )
    Cl(
        "test_nan_no_mask",
        ["--model", clf_model, "--test", nan_npz],
        expect_rc=2,
        accept_zero=lambda w, r: True,
    )
    Cl("test_inf", ["--model", clf_model, "--test", inf_npz])
    # outputs: same file, inputs, symlinks, directories
    Cl(
        "out_eq_save_model",
        ["--train", t, "--test", te, "--out", "@W/x.npz", "--save-model", "@W/x.npz"],
        protect=("@W/x.npz",),
    )
    Cl(
        "out_eq_test",
        ["--model", clf_model, "--test", "@W/te.npz", "--out", "@W/te.npz"],
        protect=(),
    )
    Cl("save_model_eq_train", ["--train", "@W/t.npz", "--test", te, "--save-model", "@W/t.npz"])
    Cl("out_eq_model", ["--model", "@W/clf.npz", "--test", te, "--out", "@W/clf.npz"])
    Cl("out_symlink_to_train", ["--train", "@W/t.npz", "--test", te, "--out", "@W/link.npz"])
    Cl(
        "out_symlink_to_save_model",
        ["--train", t, "--test", te, "--out", "@W/link2.npz", "--save-model", "@W/s.npz"],
        protect=("@W/s.npz",),
    )
    Cl("out_is_dir", ["--model", clf_model, "--test", te, "--out", adir])
    Cl("out_missing_dir", ["--model", clf_model, "--test", te, "--out", "@W/no/such/o.npz"])
    Cl("save_model_is_dir", ["--train", t, "--test", te, "--save-model", adir])
    Cl(
        "out_existing_file_on_failure",
        ["--train", t, "--test", te, "--out", "@W/keep.npz", "--reg-covar", "-1"],
        protect=("@W/keep.npz",),
    )
    Cl("out_hardlink_to_train", ["--train", "@W/t.npz", "--test", te, "--out", "@W/hard.npz"])
    # inpaint
    ip = ["inpaint", "--model", clf_model]
    C(
        "inpaint.figure_eq_out",
        ip + ["--images", te, "--out", "@W/a.npz", "--figure", "@W/a.npz"],
        protect=("@W/a.npz",),
    )
    C("inpaint.figure_eq_images", ip + ["--images", "@W/te.npz", "--figure", "@W/te.npz"])
    C(
        "inpaint.out_eq_model",
        ["inpaint", "--model", "@W/clf.npz", "--images", te, "--out", "@W/clf.npz"],
    )
    C("inpaint.fraction=1.5", ip + ["--images", te, "--fraction", "1.5"])
    C(
        "inpaint.mask_nan_no_nans",
        ip + ["--images", te, "--mask", "nan", "--out", "@W/o.npz"],
        expect_rc=2,
        accept_zero=lambda w, r: True,
    )
    C("inpaint.images_wrongshape", ip + ["--images", wrongshape])
    C("inpaint.figure_is_dir", ip + ["--images", te, "--figure", adir])
    C(
        "inpaint.figure_txt_ext",
        ip + ["--images", te, "--figure", "@W/f.txt"],
        expect_rc=2,
        accept_zero=lambda w, r: True,
    )
    # denoise
    dn = ["denoise", "--model", dn_model, "--images", te, "--limit", "2", "--method", "map"]
    for opt, vals in {
        "--sigma": ["-1", "0", "nan", "inf", "x", "1e300"],
        "--limit": ["0", "-1", "x", "1e9"],
        "--blur-sigma": ["-1", "nan", "1e9", "0"],
    }.items():
        for v in vals:
            C(
                f"denoise.{opt}={v}",
                dn + ([] if opt == "--sigma" else ["--sigma", "0.1"]) + [opt, v],
                expect_rc=2,
                must_not_exist=(),
            )
    dtr = [
        "denoise",
        "--train",
        t,
        "--images",
        te,
        "--limit",
        "2",
        "--sigma",
        "0.1",
        "--method",
        "map",
        "--n-components",
        "2",
        "--max-patches",
        "500",
        "--max-iter",
        "3",
        "--patch-size",
        "4",
    ]
    for opt, vals in {
        "--patch-size": ["0", "-1", "100", "29"],
        "--stride": ["0", "-1", "100"],
        "--max-patches": ["0", "-1"],
        "--tol": ["-1", "nan"],
        "--n-components": ["0", "-1", "100000"],
        "--max-train-images": ["0", "-1"],
        "--reg-covar": ["-1", "nan"],
        "--max-iter": ["0", "-1"],
    }.items():
        for v in vals:
            C(f"denoise.train.{opt}={v}", [a for a in dtr] + [opt, v], must_not_exist=())
    C("denoise.reference_mismatch", dn + ["--sigma", "0.1", "--reference", t])
    C("denoise.reference_with_add_noise", dn + ["--sigma", "0.1", "--reference", te, "--add-noise"])
    C(
        "denoise.out_eq_save_model",
        dtr + ["--out", "@W/d.npz", "--save-model", "@W/d.npz"],
        protect=("@W/d.npz",),
    )
    C(
        "denoise.figure_eq_out",
        dn + ["--sigma", "0.1", "--out", "@W/d.npz", "--figure", "@W/d.npz"],
        protect=("@W/d.npz",),
    )
    C(
        "denoise.out_eq_images",
        [
            "denoise",
            "--model",
            dn_model,
            "--images",
            "@W/te.npz",
            "--limit",
            "2",
            "--method",
            "map",
            "--sigma",
            "0.1",
            "--out",
            "@W/te.npz",
        ],
    )
    C(
        "denoise.model_is_classifier",
        ["denoise", "--model", clf_model, "--images", te, "--sigma", "0.1", "--limit", "2"],
    )
    C("denoise.model_and_train", dn + ["--sigma", "0.1", "--train", t])
    C("denoise.train_opts_with_model", dn + ["--sigma", "0.1", "--patch-size", "6"])
    C("denoise.no_clip_reference_r255", dn + ["--sigma", "0.1", "--reference", range255])
    C(
        "denoise.images_nan",
        [
            "denoise",
            "--model",
            dn_model,
            "--images",
            nan_npz,
            "--limit",
            "2",
            "--method",
            "map",
            "--sigma",
            "0.1",
        ],
    )
    C(
        "denoise.images_r255",
        [
            "denoise",
            "--model",
            dn_model,
            "--images",
            range255,
            "--limit",
            "2",
            "--method",
            "map",
            "--sigma",
            "0.1",
        ],
    )
    # bench: only bad options (a good run is long)
    for extra in (
        ["--bench-n", "-1"],
        ["--repeats", "0"],
        ["--benchmarks", os.path.join(base, "nope")],
        ["--n-components", "0"],
        ["--quick", "--bench-n", "0"],
        ["--data-dir", txt, "--quick"],
        ["--n-threads", "0"],
    ):
        C("bench." + "_".join(extra).replace("/", "")[-40:], ["bench"] + extra, timeout=120)
    # demo: bad options only
    for extra in (
        ["--n-components", "0"],
        ["--k-sweep", "0"],
        ["--k-sweep", "a,b"],
        ["--data-dir", txt],
        ["--data-dir", adir],
        ["--out", txt],
        ["--n-components", "-1"],
        ["--k-sweep", "1,1e9"],
    ):
        C(
            "demo." + "_".join(extra).replace("/", "")[-40:],
            ["demo"] + extra,
            timeout=120,
            protect=(txt,),
        )
    # vae train
    vt = [
        "vae",
        "train",
        "--train",
        t,
        "--architecture",
        "dense",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--n-threads",
        "1",
        "--save-model",
        "@W/m.pt",
    ]
    C("vae.train.save_model_eq_save_gmm", vt + ["--save-gmm", "@W/m.pt"], protect=("@W/m.pt",))
    C("vae.train.save_gmm_symlink_to_model", vt + ["--save-gmm", "@W/lnk.npz"], must_not_exist=())
    C(
        "vae.train.save_model_eq_train",
        [
            "vae",
            "train",
            "--train",
            "@W/t.npz",
            "--architecture",
            "dense",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--save-model",
            "@W/t.npz",
        ],
    )
    C(
        "vae.train.save_gmm_eq_train",
        [
            "vae",
            "train",
            "--train",
            "@W/t.npz",
            "--architecture",
            "dense",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--save-model",
            "@W/m.pt",
            "--save-gmm",
            "@W/t.npz",
        ],
    )
    C("vae.train.figures_is_file", vt + ["--figures", txt], protect=(txt,))
    C(
        "vae.train.save_model_dir",
        [
            "vae",
            "train",
            "--train",
            t,
            "--architecture",
            "dense",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--save-model",
            adir,
        ],
    )
    for opt, vals in {
        "--hidden-units": ["100000000"],
        "--channels": ["4", "4 4"],
        "--latent-dim": ["100000000", "0", "-1", "x", "2.5"],
        "--epochs": ["0", "-1", "1e9"],
        "--batch-size": ["0", "-1"],
        "--learning-rate": ["nan", "-1", "inf", "0"],
        "--beta": ["-1", "nan"],
        "--rotation": ["nan", "-1", "1e9"],
        "--input-noise": ["-1", "nan"],
        "--gmm-components": ["1000", "0", "-1"],
        "--reg-covar": ["-1", "nan"],
        "--digits": ["11", "-1", "a", "1 1"],
        "--device": ["bogus", "cuda:99", "meta"],
        "--n-threads": ["0", "-1000", "100000"],
        "--seed": ["-1", "99999999999999999999999"],
        "--patience": ["-1"],
    }.items():
        for v in vals:
            args = vt + [opt] + v.split()
            ok0 = (lambda w, r: True) if (opt, v) == ("--rotation", "1e9") else None
            C(f"vae.train.{opt}={v}", args, must_not_exist=("@W/m.pt",), accept_zero=ok0)
    C(
        "vae.train.gmm_opts_without_labels",
        [
            "vae",
            "train",
            "--train",
            nolab,
            "--architecture",
            "dense",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--save-model",
            "@W/m.pt",
            "--gmm-components",
            "2",
        ],
        must_not_exist=("@W/m.pt",),
    )
    C("vae.train.test_without_labels", vt + ["--test", nolab], must_not_exist=("@W/m.pt",))
    C("vae.train.test_wrongshape", vt + ["--test", wrongshape], must_not_exist=("@W/m.pt",))
    C(
        "vae.train.train_r255",
        [
            "vae",
            "train",
            "--train",
            range255,
            "--architecture",
            "dense",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--save-model",
            "@W/m.pt",
        ],
        must_not_exist=("@W/m.pt",),
    )
    C(
        "vae.train.train_nan",
        [
            "vae",
            "train",
            "--train",
            nan_npz,
            "--architecture",
            "dense",
            "--epochs",
            "1",
            "--device",
            "cpu",
            "--save-model",
            "@W/m.pt",
        ],
        must_not_exist=("@W/m.pt",),
    )
    C("vae.train.existing_model_on_failure", vt + ["--beta", "-1"], protect=("@W/m.pt",))

    # vae reconstruct / classify / sample
    def suffixed(w, r):
        return True if os.path.exists(os.path.join(w, "vae.pt.npz")) else "no .npz written"

    C(
        "vae.reconstruct.out_eq_model",
        [
            "vae",
            "reconstruct",
            "--model",
            "@W/vae.pt",
            "--images",
            te,
            "--out",
            "@W/vae.pt",
            "--device",
            "cpu",
        ],
        accept_zero=suffixed,
    )
    C(
        "vae.reconstruct.figure_eq_out",
        [
            "vae",
            "reconstruct",
            "--model",
            vae_model,
            "--images",
            te,
            "--out",
            "@W/r.npz",
            "--figure",
            "@W/r.npz",
            "--device",
            "cpu",
        ],
        protect=("@W/r.npz",),
    )
    C(
        "vae.reconstruct.out_eq_images",
        [
            "vae",
            "reconstruct",
            "--model",
            vae_model,
            "--images",
            "@W/te.npz",
            "--out",
            "@W/te.npz",
            "--device",
            "cpu",
        ],
    )
    C(
        "vae.reconstruct.model_is_gmm",
        [
            "vae",
            "reconstruct",
            "--model",
            vae_gmm,
            "--images",
            te,
            "--out",
            "@W/r.npz",
            "--device",
            "cpu",
        ],
    )
    C(
        "vae.reconstruct.model_txt",
        [
            "vae",
            "reconstruct",
            "--model",
            txt,
            "--images",
            te,
            "--out",
            "@W/r.npz",
            "--device",
            "cpu",
        ],
    )
    C(
        "vae.reconstruct.model_truncated",
        [
            "vae",
            "reconstruct",
            "--model",
            "@W/trunc.pt",
            "--images",
            te,
            "--out",
            "@W/r.npz",
            "--device",
            "cpu",
        ],
    )
    C(
        "vae.reconstruct.images_wrongshape",
        [
            "vae",
            "reconstruct",
            "--model",
            vae_model,
            "--images",
            wrongshape,
            "--out",
            "@W/r.npz",
            "--device",
            "cpu",
        ],
    )
    C(
        "vae.reconstruct.digits_no_labels",
        [
            "vae",
            "reconstruct",
            "--model",
            vae_model,
            "--images",
            nolab,
            "--out",
            "@W/r.npz",
            "--digits",
            "1",
            "--device",
            "cpu",
        ],
    )
    C(
        "vae.classify.gmm_is_vae",
        [
            "vae",
            "classify",
            "--model",
            vae_model,
            "--gmm",
            vae_model,
            "--test",
            te,
            "--device",
            "cpu",
        ],
    )
    C(
        "vae.classify.gmm_is_pixel_classifier",
        [
            "vae",
            "classify",
            "--model",
            vae_model,
            "--gmm",
            clf_model,
            "--test",
            te,
            "--device",
            "cpu",
        ],
    )
    C(
        "vae.classify.gmm_and_train",
        [
            "vae",
            "classify",
            "--model",
            vae_model,
            "--gmm",
            vae_gmm,
            "--train",
            t,
            "--test",
            te,
            "--device",
            "cpu",
        ],
    )
    C(
        "vae.classify.neither",
        ["vae", "classify", "--model", vae_model, "--test", te, "--device", "cpu"],
    )
    C(
        "vae.classify.test_nolabels",
        [
            "vae",
            "classify",
            "--model",
            vae_model,
            "--gmm",
            vae_gmm,
            "--test",
            nolab,
            "--device",
            "cpu",
        ],
        expect_rc=2,
        accept_zero=lambda w, r: True,
    )
    C(
        "vae.classify.out_eq_save_gmm",
        [
            "vae",
            "classify",
            "--model",
            vae_model,
            "--train",
            t,
            "--test",
            te,
            "--out",
            "@W/o.npz",
            "--save-gmm",
            "@W/o.npz",
            "--device",
            "cpu",
        ],
        protect=("@W/o.npz",),
    )
    C(
        "vae.classify.out_eq_model",
        [
            "vae",
            "classify",
            "--model",
            "@W/vae.pt",
            "--gmm",
            vae_gmm,
            "--test",
            te,
            "--out",
            "@W/vae.pt",
            "--device",
            "cpu",
        ],
        accept_zero=suffixed,
    )
    C(
        "vae.classify.gmm_opts_with_gmm",
        [
            "vae",
            "classify",
            "--model",
            vae_model,
            "--gmm",
            vae_gmm,
            "--test",
            te,
            "--gmm-components",
            "3",
            "--device",
            "cpu",
        ],
    )
    C(
        "vae.classify.cluster_nolabels",
        [
            "vae",
            "classify",
            "--model",
            vae_model,
            "--gmm",
            vae_gmm,
            "--test",
            nolab,
            "--cluster",
            "--device",
            "cpu",
        ],
    )
    C(
        "vae.classify.save_gmm_with_gmm",
        [
            "vae",
            "classify",
            "--model",
            vae_model,
            "--gmm",
            vae_gmm,
            "--test",
            te,
            "--save-gmm",
            "@W/g.npz",
            "--device",
            "cpu",
        ],
        must_not_exist=("@W/g.npz",),
    )
    C(
        "vae.classify.digits_absent",
        [
            "vae",
            "classify",
            "--model",
            vae_model,
            "--gmm",
            vae_gmm,
            "--test",
            te,
            "--digits",
            "7",
            "--device",
            "cpu",
        ],
        expect_rc=2,
        accept_zero=lambda w, r: True,
    )
    for v in ("0", "-1", "1000000", "x"):
        C(
            f"vae.sample.n={v}",
            [
                "vae",
                "sample",
                "--model",
                vae_model,
                "-n",
                v,
                "--out",
                "@W/s.npz",
                "--device",
                "cpu",
            ],
            must_not_exist=("@W/s.npz",),
        )
    C(
        "vae.sample.out_eq_model",
        ["vae", "sample", "--model", "@W/vae.pt", "--out", "@W/vae.pt", "--device", "cpu"],
        accept_zero=suffixed,
    )
    C(
        "vae.sample.figure_eq_out",
        [
            "vae",
            "sample",
            "--model",
            vae_model,
            "--out",
            "@W/s.npz",
            "--figure",
            "@W/s.npz",
            "--device",
            "cpu",
        ],
        protect=("@W/s.npz",),
    )
    C(
        "vae.sample.gmm_is_vae",
        [
            "vae",
            "sample",
            "--model",
            vae_model,
            "--gmm",
            vae_model,
            "--out",
            "@W/s.npz",
            "--device",
            "cpu",
        ],
    )
    C(
        "vae.sample.out_symlink_to_model",
        ["vae", "sample", "--model", "@W/vae.pt", "--out", "@W/lnkm.npz", "--device", "cpu"],
    )
    C(
        "vae.sample.seed_neg",
        [
            "vae",
            "sample",
            "--model",
            vae_model,
            "--out",
            "@W/s.npz",
            "--seed",
            "-1",
            "--device",
            "cpu",
        ],
    )
    C(
        "debug_flag_bad_input",
        ["--debug", "classify", "--test", os.path.join(base, "nope.npz"), "--train", t],
        expect_rc=2,
    )


def cli_prepare_hook(group, cid, fn):
    """Copies the fixtures that an @W case names into its work dir (done inside run)."""
    return fn


# The @W cases that need copies: wrap run_cli to copy files first
_COPIES = {
    "te.npz": "te.npz",
    "t.npz": "t.npz",
    "clf.npz": "clf.npz",
    "vae.pt": "vae.pt",
}


def _patch_cli_copies():
    """Rewrite cli cases so that @W/te.npz etc. exist (copied) and links are made."""
    base = os.path.join(tmpdir(), "cli")
    new = []
    for group, cid, fn in CASES:
        if group != "cli":
            new.append((group, cid, fn))
            continue

        def wrapped(fn=fn, cid=cid):
            orig_mkdtemp = tempfile.mkdtemp

            def mk(*a, **k):
                w = orig_mkdtemp(*a, **k)
                for src in ("te.npz", "t.npz", "clf.npz", "vae.pt"):
                    s = os.path.join(base, src)
                    if os.path.exists(s):
                        shutil.copy(s, os.path.join(w, src))
                os.path.join(base, "t.npz")
                with contextlib.suppress(OSError):
                    os.symlink(os.path.join(w, "t.npz"), os.path.join(w, "link.npz"))
                    os.symlink(os.path.join(w, "s.npz"), os.path.join(w, "link2.npz"))
                    os.symlink(os.path.join(w, "m.pt"), os.path.join(w, "lnk.npz"))
                    os.symlink(os.path.join(w, "vae.pt"), os.path.join(w, "lnkm.npz"))
                    os.link(os.path.join(w, "t.npz"), os.path.join(w, "hard.npz"))
                if os.path.exists(os.path.join(w, "vae.pt")):
                    b = open(os.path.join(w, "vae.pt"), "rb").read()
                    open(os.path.join(w, "trunc.pt"), "wb").write(b[: len(b) // 2])
                # hashes of every copied input: a failed or refused run must leave them
                return w

            tempfile.mkdtemp = mk
            try:
                return _protect_inputs(fn)
            finally:
                tempfile.mkdtemp = orig_mkdtemp

        new.append((group, cid, wrapped))
    CASES[:] = new


def _protect_inputs(fn):
    """Run a cli case; afterwards, any copied input in its work dir must be intact."""
    before = set(os.listdir(os.path.join(tmpdir(), "cli")))
    res = fn()
    after = [d for d in os.listdir(os.path.join(tmpdir(), "cli")) if d not in before]
    base = os.path.join(tmpdir(), "cli")
    for d in after:
        w = os.path.join(base, d)
        if not os.path.isdir(w):
            continue
        for src in ("te.npz", "t.npz", "clf.npz", "vae.pt"):
            p = os.path.join(w, src)
            s = os.path.join(base, src)
            if os.path.exists(s):
                if not os.path.exists(p):
                    return DATA_LOSS, f"input {src} removed; run said {res[0]}: {res[1][:150]}"
                if open(p, "rb").read() != open(s, "rb").read():
                    if res[0] == OK and "accepted" not in res[1]:
                        return (
                            DATA_LOSS,
                            f"input {src} overwritten though the run failed: {res[1][:150]}",
                        )
                    return DATA_LOSS, f"input {src} overwritten ({res[0]}: {res[1][:150]})"
    return res


# ================================================================ driver
GROUPS = {
    "est": est_cases,
    "stream": stream_cases,
    "dask": dask_cases,
    "clust": clustering_cases,
    "image": image_cases,
    "vae": vae_cases,
    "cli": cli_cases,
}


def build(only):
    for g, fn in GROUPS.items():
        if only and g not in only and not (g == "dask" and "cluster" in only):
            continue
        fn()
    if not only or "dask" in only or "cluster" in only:
        r = cluster_dask_cases()
        CASES.append(("cluster", "cluster:local_cluster", r))
    _patch_cli_copies()


def worker(start, only, k, out_path):
    global TMP
    TMP = os.environ["HOSTILE_TMP"]
    resource.setrlimit(resource.RLIMIT_DATA, (MEM_LIMIT, MEM_LIMIT))
    warnings.simplefilter("ignore")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    build(only)
    sel = [c for c in CASES if not k or k in c[1]]
    with open(out_path, "a") as out:
        for i in range(start, len(sel)):
            g, cid, fn = sel[i]
            out.write(json.dumps({"i": i, "id": cid, "start": time.time()}) + "\n")
            out.flush()
            t0 = time.time()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = fn()
            except Verdict as v:
                res = (v.outcome, v.detail)
            except BaseException as e:  # noqa: BLE001
                res = (
                    "HARNESS",
                    _short(e) + " " + traceback.format_exc()[-300:].replace("\n", " | "),
                )
            if isinstance(res, list):  # the cluster case returns several
                for sub, o, d in res:
                    out.write(
                        json.dumps(
                            {
                                "i": i,
                                "id": f"{cid}.{sub}",
                                "outcome": o,
                                "detail": d,
                                "t": round(time.time() - t0, 2),
                            }
                        )
                        + "\n"
                    )
            else:
                out.write(
                    json.dumps(
                        {
                            "i": i,
                            "id": cid,
                            "outcome": res[0],
                            "detail": res[1],
                            "t": round(time.time() - t0, 2),
                        }
                    )
                    + "\n"
                )
            out.write(json.dumps({"i": i, "id": cid, "done": True}) + "\n")
            out.flush()
    return 0


def parent(args):
    tmp = tempfile.mkdtemp(prefix="hostile_rerun_")
    out_path = os.path.join(tmp, "results.jsonl")
    open(out_path, "w").close()
    env = dict(os.environ, HOSTILE_TMP=tmp)
    start = 0
    t_begin = time.time()
    results = {}
    while True:
        cmd = [sys.executable, __file__, "--worker", str(start), "--out", out_path]
        if args.only:
            cmd += ["--only", args.only]
        if args.k:
            cmd += ["-k", args.k]
        p = subprocess.Popen(cmd, env=env, start_new_session=True)
        last_start = None
        pos = 0
        hung = False

        def consume():
            nonlocal pos, last_start
            with open(out_path) as fh:
                lines = fh.readlines()
            for ln in lines[pos:]:
                if not ln.endswith("\n"):
                    break
                pos += 1
                rec = json.loads(ln)
                if "start" in rec:
                    last_start = rec
                elif rec.get("done"):
                    last_start = None
                else:
                    results[rec["id"]] = rec
                    if not args.quiet:
                        print(
                            f"{rec['outcome']:14s} {rec['id']}  ({rec['t']}s) {rec['detail'][:160]}",
                            flush=True,
                        )

        while p.poll() is None:
            time.sleep(0.5)
            consume()
            if last_start and time.time() - last_start["start"] > CASE_TIMEOUT:
                os.killpg(p.pid, 9)
                p.wait()
                hung = True
                break
        consume()
        if last_start is None:
            break  # finished
        outcome = HANG if hung else CRASH
        detail = f"ran past {CASE_TIMEOUT}s" if hung else f"worker died, rc={p.returncode}"
        results[last_start["id"]] = {
            "id": last_start["id"],
            "outcome": outcome,
            "detail": detail,
            "t": None,
        }
        print(f"{outcome:14s} {last_start['id']}  {detail}", flush=True)
        start = last_start["i"] + 1
    # summary
    counts = {}
    for r in results.values():
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    print("\n==== summary ({} cases, {:.0f}s) ====".format(len(results), time.time() - t_begin))
    for k in (OK, CRASH, HANG, TRACEBACK, DATA_LOSS, BOMB, WRONG, UNCLEAR, "HARNESS"):
        print(f"{k:14s} {counts.get(k, 0)}")
    print("\n==== not OK ====")
    for r in sorted(results.values(), key=lambda r: (r["outcome"], r["id"])):
        if r["outcome"] != OK:
            print(f"{r['outcome']:14s} {r['id']}: {r['detail'][:400]}")
    with open(args.json or os.path.join(tmp, "summary.json"), "w") as fh:
        json.dump({"counts": counts, "results": list(results.values())}, fh, indent=1)
    shutil.rmtree(tmp, ignore_errors=True) if not args.keep else None
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--worker", type=int, default=None)
    ap.add_argument("--out")
    ap.add_argument("--only", default="")
    ap.add_argument("-k", default="")
    ap.add_argument(
        "--json", default=os.path.join(tempfile.gettempdir(), "hostile_rerun_results.json")
    )
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    only = [s for s in args.only.split(",") if s]
    if args.worker is not None:
        return worker(args.worker, only, args.k, args.out)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
