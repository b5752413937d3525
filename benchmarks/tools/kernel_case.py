"""One process of ``ab_kernels.py``: time the kernel hot paths ``rounds`` times each.

Runs against whichever gmmfast the interpreter imports (the layouts before and
after the subpackage split are both understood) and prints one line
``JSON {"file": ..., "res": {case: [seconds, ...]}}``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

import gmmfast
from gmmfast import GaussianMixture
from gmmfast.datasets import load_idx_dir

try:  # the layout since the subpackage split
    from gmmfast.image import average_patches, extract_patches
    from gmmfast.mixture import _gaussian as gaussian
    from gmmfast.mixture import _missing_em as missing_em
except ImportError:  # the flat layout before it
    from gmmfast import _gaussian as gaussian
    from gmmfast import _missing_em as missing_em
    from gmmfast.patches import average_patches, extract_patches

CASES = ("score", "em", "missing_em", "masked", "patches")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-dir", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=4000, help="MNIST training images (default 4000)")
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    cases = args.cases.split(",")
    X = load_idx_dir(args.mnist_dir)[0]
    X = np.ascontiguousarray(X.reshape(len(X), -1)[: args.n], dtype=np.float64) / 255.0
    rng = np.random.default_rng(0)
    results: dict[str, list[float]] = {}

    def timeit(name, function, setup=None):
        function()  # warm-up
        times = []
        for _ in range(args.rounds):
            if setup:
                setup()
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
        results[name] = times

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        params = GaussianMixture(10, max_iter=3, random_state=0).fit(X)._get_parameters()

    def model(dtype, source=params, **kw):
        m = GaussianMixture(len(source[0]), dtype=dtype, **kw)
        m._set_parameters(tuple(p.copy() for p in source))
        m.n_features_in_ = X.shape[1]
        return m

    for dtype, tag in ((np.float64, "f64"), (np.float32, "f32")):
        Xc = np.ascontiguousarray(X, dtype=dtype)
        m = model(dtype)
        if "score" in cases:
            timeit(f"score_samples-{tag}", lambda: m.score_samples(Xc))
        if "em" in cases:

            def em(m=m, Xc=Xc):
                resp, _ = m._estimate(Xc, gaussian.MODE_RESP)
                m._m_step(Xc, resp)

            timeit(
                f"em_iteration-{tag}",
                em,
                lambda m=m: m._set_parameters(tuple(p.copy() for p in params)),
            )
    if "missing_em" in cases:
        Xn = X[:2000].copy()
        observed = np.ones(Xn.shape, bool)
        for row in observed:
            row[rng.choice(X.shape[1], X.shape[1] // 4, replace=False)] = False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            five = GaussianMixture(5, reg_covar=0.05, max_iter=3, random_state=0).fit(Xn)
        start = five._get_parameters()
        data = missing_em.prepare(np.where(observed, Xn, np.nan), None, dtype=np.float64)

        def reset():
            five._set_parameters(tuple(p.copy() for p in start))

        timeit("missing_em-estep", lambda: five._log_prob(data, gaussian.MODE_RESP), reset)
        resp, _ = five._log_prob(data, gaussian.MODE_RESP)
        timeit("missing_em-mstep", lambda: five._m_step(data, resp), reset)
    if "masked" in cases:
        Xm = X[:300].copy()
        half = rng.random(Xm.shape) < 0.5
        for dtype, tag in ((np.float64, "f64"), (np.float32, "f32")):
            m = model(dtype, reg_covar=0.05)
            timeit(
                f"missing_classification-{tag}",
                lambda m=m: m.score_samples(np.where(half, Xm, np.nan)),
            )
    if "patches" in cases:
        images = X[:1000].reshape(1000, 28, 28)
        for dtype, tag in ((np.float64, "f64"), (np.float32, "f32")):
            im = np.ascontiguousarray(images, dtype=dtype)
            patches = extract_patches(im, 8)
            out = np.empty_like(patches)
            timeit(f"extract-out-{tag}", lambda im=im, out=out: extract_patches(im, 8, out=out))
            timeit(f"average-{tag}", lambda p=patches: average_patches(p, (28, 28), 8))
    print("JSON" + json.dumps({"file": gmmfast.__file__, "res": results}))


if __name__ == "__main__":
    main()
