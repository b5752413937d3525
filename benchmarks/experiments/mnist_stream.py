"""Stepwise (online) EM on MNIST: partial_fit against batch EM, mixture and classifier.

    python benchmarks/experiments/mnist_stream.py                      # both stages
    python benchmarks/experiments/mnist_stream.py --stages mixture
    python benchmarks/experiments/mnist_stream.py --stages classifier

Stages:
  mixture     GaussianMixture, K = --k, full covariances, float32,
              reg_covar = --reg, on the 60,000 training images (pixels in
              [0, 1]) in a fixed random order. Every run starts from the same
              initial parameters: gmmfast's k-means initialisation (k-means++
              then Lloyd) on the first --init-n images of that order. Batch
              EM (the loop of GaussianMixture.fit: E-step then M-step on all
              the images) runs until the mean log-likelihood gains less than
              --tol; stepwise EM (partial_fit, the *_init parameters given)
              makes one pass in batches of each --batch-sizes, for each
              --decays (learning_decay; learning_offset --offset), plus the
              extra variants of --extra. The test mean log-likelihood is
              recorded against samples seen; table and figure in
              benchmarks/results/mnist_stream.{json,md,png}.
  classifier  GMMClassifier(--k per class, reg_covar --reg, float32): fit on
              the training images against partial_fit over one pass in
              batches of --clf-batch (same order), test accuracy of both.

Every run checkpoints into --work-dir (the stepwise models through
GaussianMixture.save, which keeps the running statistics), so an
interrupted run resumes where it stopped; --fresh starts over.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import Timer, base_parser, load_full_mnist, machine, write_results  # noqa: E402

from gmmfast import ConvergenceWarning, GaussianMixture, GMMClassifier  # noqa: E402
from gmmfast.mixture import _gaussian  # noqa: E402

EVAL_POINTS = (100, 200, 500, 1000, 2000, 3000, 5000, 7500, 10000, 15000, 20000, 30000)


def eval_points(batch: int, n: int) -> list[int]:
    """Samples seen at which the test log-likelihood is recorded."""
    points = {p for p in EVAL_POINTS if p % batch == 0 and p <= n}
    points |= set(range(10000, n + 1, 10000))
    points.add(n - n % batch)
    return sorted(points)


def load_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def save_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=float))
    tmp.replace(path)


def initial_parameters(args, X_stream) -> dict:
    """The shared start: gmmfast's k-means initialisation on the first --init-n images."""
    gm = GaussianMixture(
        args.k,
        covariance_type="full",
        reg_covar=args.reg,
        dtype=np.float32,
        max_iter=0,
        random_state=args.seed,
        n_threads=args.n_threads,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X_stream[: args.init_n])
    return {
        "weights_init": gm.weights_,
        "means_init": gm.means_,
        "precisions_init": gm.precisions_,
    }


def mixture(args, init, **kwargs) -> GaussianMixture:
    return GaussianMixture(
        args.k,
        covariance_type="full",
        reg_covar=args.reg,
        dtype=np.float32,
        random_state=args.seed,
        n_threads=args.n_threads,
        **init,
        **kwargs,
    )


def run_batch_em(args, init, X, X_test, work: Path) -> dict:
    """fit's EM loop on all the images, the test log-likelihood after every iteration."""
    record_path, model_path = work / "batch_em.json", work / "batch_em.npz"
    record = load_json(record_path)
    if record.get("done"):
        return record
    if record and model_path.exists():
        gm = GaussianMixture.load(model_path)
        print(f"batch EM: resuming after iteration {record['iterations']}", flush=True)
    else:
        gm = mixture(args, init, max_iter=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            gm.fit(X[: args.k])  # max_iter=0: only the *_init parameters are set
        record = {
            "iterations": 0,
            "train_ll": [],
            "test_ll": [float(gm.score(X_test))],
            "seconds": 0.0,
        }
    while record["iterations"] < args.max_iter:
        start = time.perf_counter()
        resp, log_norm = gm._log_prob(X, _gaussian.MODE_RESP)
        gm._m_step(X, resp)
        del resp
        record["seconds"] += time.perf_counter() - start
        record["iterations"] += 1
        record["train_ll"].append(float(np.mean(log_norm)))
        record["test_ll"].append(float(gm.score(X_test)))
        ll = record["train_ll"]
        print(
            f"batch EM iteration {record['iterations']}: train {ll[-1]:.4f}, "
            f"test {record['test_ll'][-1]:.4f}, {record['seconds']:.0f} s",
            flush=True,
        )
        converged = len(ll) > 1 and abs(ll[-1] - ll[-2]) < args.tol
        gm.converged_, gm.n_iter_, gm.lower_bound_ = converged, record["iterations"], ll[-1]
        gm.save(model_path)
        record["done"] = converged
        save_json(record_path, record)
        if converged:
            break
    record["done"] = True
    save_json(record_path, record)
    return record


def run_stepwise(args, init, X, X_test, work: Path, name: str, batch: int, **params) -> dict:
    """One pass of partial_fit in batches of ``batch``, checkpointed at every evaluation."""
    record_path, model_path = work / f"{name}.json", work / f"{name}.npz"
    record = load_json(record_path)
    if record.get("done"):
        return record
    points = eval_points(batch, len(X))
    if record and model_path.exists():
        gm = GaussianMixture.load(model_path)
        print(f"{name}: resuming at {record['samples'][-1]} samples", flush=True)
    else:
        gm = mixture(args, init, **params)
        record = {"batch": batch, "params": params, "samples": [], "test_ll": [], "seconds": 0.0}
    position = record["samples"][-1] if record["samples"] else 0
    for point in points:
        if point <= position:
            continue
        start = time.perf_counter()
        for lo in range(position, point, batch):
            gm.partial_fit(X[lo : lo + batch])
        record["seconds"] += time.perf_counter() - start
        position = point
        record["samples"].append(point)
        record["test_ll"].append(float(gm.score(X_test)))
        print(
            f"{name}: {point} samples, test {record['test_ll'][-1]:.4f}, {record['seconds']:.1f} s",
            flush=True,
        )
        gm.save(model_path)  # with the running statistics (the *_init guesses are not saved)
        save_json(record_path, record)
    record["samples_per_second"] = position / record["seconds"]
    record["done"] = True
    save_json(record_path, record)
    return record


def parse_extra(specs: list[str]) -> list[tuple[str, int, dict]]:
    """``batch:key=value,key=value`` -> (name, batch, params)."""
    runs = []
    for spec in specs:
        batch_text, _, rest = spec.partition(":")
        params = {}
        for item in filter(None, rest.split(",")):
            key, _, value = item.partition("=")
            params[key] = (
                int(value) if key in ("averaging", "first_batch", "init_size") else float(value)
            )
        name = f"stepwise_b{batch_text}_" + "_".join(f"{k}{v:g}" for k, v in params.items())
        runs.append((name, int(batch_text), params))
    return runs


def stage_mixture(args, X, X_test, work: Path) -> dict:
    with Timer() as t_init:
        init = initial_parameters(args, X)
    runs = {"batch_em": run_batch_em(args, init, X, X_test, work)}
    specs = [
        (f"stepwise_b{batch}_decay{decay:g}", batch, {"learning_decay": decay})
        for batch in args.batch_sizes
        for decay in args.decays
    ]
    specs += parse_extra(args.extra)
    for name, batch, params in specs:
        params.setdefault("learning_offset", args.offset)
        runs[name] = run_stepwise(args, init, X, X_test, work, name, batch, **params)
    reference = runs["batch_em"]["test_ll"][-1]
    rows = []
    for name, record in runs.items():
        final = record["test_ll"][-1]
        gap = (reference - final) / abs(reference)
        rows.append(
            {
                "run": name,
                "batch": record.get("batch", len(X)),
                "params": record.get("params", {}),
                "samples_seen": record["samples"][-1]
                if "samples" in record
                else record["iterations"] * len(X),
                "test_ll": final,
                "gap_to_batch_em": gap,
                "within_1pct": bool(gap <= 0.01),
                "seconds": record["seconds"],
            }
        )
    figure(args, runs, len(X))
    return {
        "init_seconds": t_init.seconds,
        "batch_em_iterations": runs["batch_em"]["iterations"],
        "rows": rows,
        "curves": runs,
    }


def figure(args, runs: dict, n: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.5))
    batch = runs["batch_em"]
    seen = [n * i for i in range(len(batch["test_ll"]))]
    final = batch["test_ll"][-1]
    ax.plot(seen[1:], batch["test_ll"][1:], "k.-", label="batch EM (60,000 images per iteration)")
    ax.axhline(final, color="k", lw=0.6, ls=":")
    ax.axhline(final - 0.01 * abs(final), color="r", lw=0.8, ls=":", label="1% below batch EM")
    colours = {0.6: "tab:blue", 1.0: "tab:orange"}
    for name, record in runs.items():
        if name == "batch_em":
            continue
        params = record["params"]
        averaged = params.get("averaging") is not None
        label = f"stepwise, batch {record['batch']:,}, decay {params['learning_decay']:g}" + (
            f", Polyak averaging from step {params['averaging']}" if averaged else ""
        )
        ax.plot(
            record["samples"],
            record["test_ll"],
            "-" if record["batch"] >= 1000 else "--",
            color=colours.get(params["learning_decay"], "tab:green"),
            marker="x" if averaged else ".",
            alpha=0.6 if averaged else 1.0,
            label=label,
        )
    ax.set_xscale("log")
    ax.set_xlabel("samples seen (batch EM: iterations x 60,000)")
    ax.set_ylabel("test mean log-likelihood (nats per image)")
    ax.set_ylim(final - 0.1 * abs(final), final + 0.02 * abs(final))
    ax.set_title(f"MNIST, K = {args.k}, full covariances, float32, reg_covar {args.reg}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    out = Path(args.out) / "mnist_stream.png"
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def stage_classifier(args, X, y, X_test, y_test, work: Path) -> dict:
    record_path = work / "classifier.json"
    record = load_json(record_path)

    def make() -> GMMClassifier:
        return GMMClassifier(
            args.k,
            reg_covar=args.reg,
            dtype=np.float32,
            random_state=args.seed,
            n_threads=args.n_threads,
        )

    if "batch" not in record:
        clf = make()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            with Timer() as t:
                clf.fit(X, y)
        record["batch"] = {
            "accuracy": float(clf.score(X_test, y_test)),
            "fit_seconds": t.seconds,
            "n_iter": clf.n_iter_.tolist(),
        }
        print(f"classifier fit: {record['batch']}", flush=True)
        save_json(record_path, record)
    for extra in [{}] + [dict(p) for _, _, p in parse_extra(args.clf_extra)]:
        key = "stream" + "".join(f"_{k}{v:g}" for k, v in extra.items())
        if key in record:
            continue
        params = dict(extra)
        first = params.pop("first_batch", args.clf_batch)  # a larger first batch: a better start
        clf = make().set_params(**params)
        classes = np.unique(y)
        bounds = [0, *range(first, len(X), args.clf_batch), len(X)]
        with Timer() as t:
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                clf.partial_fit(X[lo:hi], y[lo:hi], classes=classes)
        record[key] = {
            "params": extra,
            "batch": args.clf_batch,
            "first_batch": first,
            "n_batches": clf.n_batches_seen_,
            "accuracy": float(clf.score(X_test, y_test)),
            "partial_fit_seconds": t.seconds,
        }
        print(f"classifier partial_fit {extra}: {record[key]}", flush=True)
        record = {**load_json(record_path), **record}  # another run may have added variants
        save_json(record_path, record)
    return record


def markdown(args, payload: dict) -> str:
    lines = [
        "# Stepwise (online) EM on MNIST (`benchmarks/experiments/mnist_stream.py`)",
        "",
        f"Machine: {payload['machine']}. Command: `{payload['command']}`. Seconds are wall "
        "time on the machine's 2 cores, shared with other jobs during these runs.",
        "",
    ]
    if "mixture" in payload:
        m = payload["mixture"]
        lines += [
            f"## GaussianMixture, K = {args.k}, full, float32, reg_covar = {args.reg}",
            "",
            f"60,000 training images in a fixed random order (seed {args.seed}); every run starts "
            f"from gmmfast's k-means initialisation on the first {args.init_n} of them. Batch EM "
            f"ran {m['batch_em_iterations']} iterations (until the training log-likelihood gained "
            f"less than {args.tol}); stepwise EM makes one pass. Test mean log-likelihood on the "
            "10,000 test images (nats per image):",
            "",
            "| run | batch | parameters | samples seen | test log-likelihood | below batch EM | within 1% | seconds |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in m["rows"]:
            params = ", ".join(f"{k} {v:g}" for k, v in r["params"].items()) or "-"
            lines.append(
                f"| {r['run']} | {r['batch']:,} | {params} | {r['samples_seen']:,} | "
                f"{r['test_ll']:.2f} | {100 * r['gap_to_batch_em']:.2f}% | "
                f"{'yes' if r['within_1pct'] else 'no'} | {r['seconds']:.0f} |"
            )
        lines += ["", "![test log-likelihood against samples seen](mnist_stream.png)", ""]
    if "classifier" in payload:
        c = payload["classifier"]
        lines += [
            f"## GMMClassifier, K = {args.k} per class, reg_covar = {args.reg}, float32",
            "",
            "| training | test accuracy | seconds |",
            "|---|---|---|",
            f"| fit (batch EM per class) | {100 * c['batch']['accuracy']:.2f}% | {c['batch']['fit_seconds']:.0f} |",
        ]
        for key, value in c.items():
            if key.startswith("stream"):
                params = ", ".join(f"{k} {v:g}" for k, v in value["params"].items())
                params = params.replace("first_batch", "first batch")
                lines.append(
                    f"| partial_fit, one pass in batches of {value['batch']:,}"
                    f"{' (' + params + ')' if params else ''} | {100 * value['accuracy']:.2f}% "
                    f"({100 * (value['accuracy'] - c['batch']['accuracy']):+.2f} points) | "
                    f"{value['partial_fit_seconds']:.0f} |"
                )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--stages", nargs="+", default=["mixture", "classifier"])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--reg", type=float, default=0.05)
    parser.add_argument("--init-n", type=int, default=1000)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1000, 100])
    parser.add_argument("--decays", nargs="+", type=float, default=[0.6, 1.0])
    parser.add_argument("--offset", type=float, default=0.0)
    parser.add_argument(
        "--extra",
        nargs="*",
        default=[],
        help="more stepwise runs, BATCH:key=value,... (learning_decay, learning_offset, averaging)",
    )
    parser.add_argument("--clf-batch", type=int, default=1000)
    parser.add_argument(
        "--clf-extra", nargs="*", default=[], help="more classifier partial_fit runs, as --extra"
    )
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--max-iter", type=int, default=500)
    parser.add_argument("--work-dir", default="/tmp/gmmfast_mnist_stream")
    parser.add_argument("--fresh", action="store_true", help="ignore the checkpoints")
    args = parser.parse_args()

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        for path in work.iterdir():
            path.unlink()
    X, y, X_test, y_test = load_full_mnist(args.mnist_dir)
    order = np.random.RandomState(args.seed).permutation(len(X))
    X, y = np.ascontiguousarray(X[order], dtype=np.float32), y[order]
    X_test = np.ascontiguousarray(X_test, dtype=np.float32)

    out = Path(args.out)
    previous = load_json(out / "mnist_stream.json")
    payload = {
        "machine": machine(),
        "command": "python benchmarks/experiments/mnist_stream.py " + " ".join(sys.argv[1:]),
        "settings": vars(args),
    }
    for key in ("mixture", "classifier"):  # keep the other stage's results
        if key in previous:
            payload[key] = previous[key]
    if "mixture" in args.stages:
        payload["mixture"] = stage_mixture(args, X, X_test, work)
        write_results(args.out, "mnist_stream", payload, markdown(args, payload))
    if "classifier" in args.stages:
        payload["classifier"] = stage_classifier(args, X, y, X_test, y_test, work)
        write_results(args.out, "mnist_stream", payload, markdown(args, payload))


if __name__ == "__main__":
    main()
