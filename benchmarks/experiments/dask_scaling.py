"""EM on Dask arrays: cost against the in-memory fit, and out-of-core throughput (issue 15).

Two cases, each on a ``LocalCluster`` of 2 single-threaded worker processes on 127.0.0.1:

``efficiency``
    MNIST-like data in memory: the 60,000 training images and the same
    images shifted one pixel right (N = 120,000, D = 784), float32, K = 10
    full covariances. Seconds per EM iteration of the in-memory fit
    (``n_threads=2``) and of the Dask fit on the cluster with the data
    persisted on the workers. Per-iteration time is the difference between
    fits of ``--iters`` and 1 iterations from the same initial parameters,
    divided by ``--iters - 1`` (fixed costs, the in-memory validation and
    the Dask survey pass, cancel out). The task stream of the Dask fits
    says where the time goes (block E/M-steps, merges, transfers).

``out-of-core``
    K = 3 full covariances on N x 50 float32 (default N = 20,000,000: 4 GB)
    read from a ``.npy`` file through ``numpy.load(mmap_mode="r")``, block
    by block on the workers (``memory_limit`` 1 GB each). Seconds per
    iteration, samples per second, and the peak resident memory of every
    worker process and of the client (polled every 0.1 s with psutil).

Run (``nice`` on a shared machine)::

    nice -n 10 python benchmarks/experiments/dask_scaling.py efficiency --iters 3
    nice -n 10 python benchmarks/experiments/dask_scaling.py out-of-core --n 20000000 \\
        --path /work/scratch-dask/oocore.npy --iters 3

Results: benchmarks/results/dask_efficiency.{json,md} and dask_out_of_core.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_MNIST_DIR, RESULTS_DIR, machine, write_results  # noqa: E402

from gmmfast import ConvergenceWarning, GaussianMixture  # noqa: E402
from gmmfast.datasets import load_idx_dir  # noqa: E402


def _machine() -> dict[str, Any]:
    """Machine notes, with the load average: the reference machine is shared."""
    return {**machine(), "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]}


def _cluster(memory_limit: str | None = None):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        memory_limit=memory_limit,
    )
    return cluster, Client(cluster)


class PeakMemory:
    """Peak resident memory of processes, polled in a thread."""

    def __init__(self, pids: dict[str, int], interval: float = 0.1) -> None:
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.peak = dict.fromkeys(pids, 0)
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, proc in self.procs.items():
                try:
                    self.peak[name] = max(self.peak[name], proc.memory_info().rss)
                except Exception:  # a restarted worker: keep what was seen
                    pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu_seconds(client: Any = None) -> float:
    """CPU seconds (user + system) used so far by this process and the cluster's workers."""
    import psutil

    def own() -> float:
        times = psutil.Process().cpu_times()
        return times.user + times.system

    workers = sum(client.run(own).values()) if client is not None else 0.0
    return own() + workers


def _timed_fit(
    X: Any, iters: int, init: dict, client: Any = None, **params: Any
) -> tuple[float, float, GaussianMixture]:
    """Wall and CPU seconds (client and workers) of a fit of ``iters`` iterations."""
    gm = GaussianMixture(tol=0.0, max_iter=iters, **init, **params)
    cpu = _cpu_seconds(client)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(X)
    wall = time.perf_counter() - start
    return wall, _cpu_seconds(client) - cpu, gm


def _task_summary(stream: list[dict]) -> dict[str, float]:
    """Seconds of compute per task kind and of worker-to-worker transfers, from a task stream."""
    from dask.utils import key_split

    out: dict[str, float] = {}
    for task in stream:
        prefix = key_split(task["key"])
        for part in task["startstops"]:
            kind = part["action"] if part["action"] != "compute" else prefix
            out[kind] = out.get(kind, 0.0) + part["stop"] - part["start"]
    return {k: round(v, 3) for k, v in sorted(out.items())}


# ---------------------------------------------------------------- efficiency
def efficiency(args: argparse.Namespace) -> None:
    import dask.array as da
    from distributed import get_task_stream

    images, _ = load_idx_dir(args.mnist_dir, "train")
    X = images.reshape(len(images), -1).astype(np.float32) / 255.0
    shifted = np.roll(images, 1, axis=2).reshape(len(images), -1).astype(np.float32) / 255.0
    X = np.ascontiguousarray(np.vstack([X, shifted])[: args.n], dtype=args.dtype)
    K = 10
    print(f"X {X.shape} {X.dtype}; initial parameters from k-means++ on 10,000 rows", flush=True)
    rng = np.random.RandomState(args.seed)
    sample = X[rng.choice(len(X), min(len(X), 10_000), replace=False)]
    ref = GaussianMixture(K, init_params="k-means++", random_state=args.seed, max_iter=1)
    ref.fit(sample)
    init = {
        "weights_init": ref.weights_,
        "means_init": ref.means_,
        "precisions_init": ref.precisions_,
    }
    params = dict(n_components=K, covariance_type="full", dtype=args.dtype, reg_covar=1e-3)
    results: dict[str, Any] = {"n_samples": len(X), "n_features": X.shape[1], "K": K}

    memory, memory_cpu = {}, {}
    for iters in (1, args.iters):
        memory[iters], memory_cpu[iters], mem_fit = _timed_fit(
            X, iters, init, n_threads=2, **params
        )
        print(f"in memory, {iters} iteration(s): {memory[iters]:.2f} s", flush=True)
    in_memory = (memory[args.iters] - memory[1]) / (args.iters - 1)
    in_memory_cpu = (memory_cpu[args.iters] - memory_cpu[1]) / (args.iters - 1)

    cluster, client = _cluster()
    try:
        rows = -(-len(X) // args.blocks)
        Xd = da.from_array(X, chunks=(rows, X.shape[1])).persist()
        from distributed import wait

        wait(Xd)
        dask_times, dask_cpu = {}, {}
        streams = {}
        for iters in (1, args.iters):
            with get_task_stream(client) as ts:
                dask_times[iters], dask_cpu[iters], dask_fit = _timed_fit(
                    Xd, iters, init, client, **params
                )
            streams[iters] = _task_summary(ts.data)
            print(f"dask, {iters} iteration(s): {dask_times[iters]:.2f} s", flush=True)
    finally:
        client.close()
        cluster.close()
    on_dask = (dask_times[args.iters] - dask_times[1]) / (args.iters - 1)
    on_dask_cpu = (dask_cpu[args.iters] - dask_cpu[1]) / (args.iters - 1)
    agreement = float(np.abs(dask_fit.means_ - mem_fit.means_).max())
    per_iteration = {
        k: round((streams[args.iters].get(k, 0.0) - streams[1].get(k, 0.0)) / (args.iters - 1), 3)
        for k in set(streams[args.iters]) | set(streams[1])
        if "survey" not in k  # once per fit: cancels out
    }
    results.update(
        machine=_machine(),
        blocks=args.blocks,
        dtype=args.dtype,
        iters=args.iters,
        in_memory_fit_seconds=memory,
        dask_fit_seconds=dask_times,
        in_memory_s_per_iteration=in_memory,
        dask_s_per_iteration=on_dask,
        ratio=on_dask / in_memory,
        in_memory_cpu_s_per_iteration=in_memory_cpu,
        dask_cpu_s_per_iteration=on_dask_cpu,
        cpu_ratio=on_dask_cpu / in_memory_cpu,
        task_seconds_per_iteration=per_iteration,
        max_abs_mean_difference=agreement,
    )
    md = (
        "# EM on Dask arrays: cost against the in-memory fit\n\n"
        f"MNIST train + one-pixel-shifted train, N = {len(X):,}, D = 784, {args.dtype}, K = {K} full; "
        f"{args.blocks} blocks on LocalCluster(2 workers x 1 thread, processes) with the data "
        "persisted; in memory with n_threads=2. "
        f"Per iteration: (t[{args.iters} iterations] - t[1]) / {args.iters - 1}.\n\n"
        "| | s / iteration |\n|---|---|\n"
        f"| in memory | {in_memory:.2f} |\n| Dask, LocalCluster | {on_dask:.2f} |\n"
        f"| ratio | {on_dask / in_memory:.3f} |\n\n"
        "CPU seconds per iteration (user + system; client and workers), which the load "
        "of a shared machine disturbs less than wall time: "
        f"in memory {in_memory_cpu:.2f}, Dask {on_dask_cpu:.2f}, "
        f"ratio {on_dask_cpu / in_memory_cpu:.3f}.\n\n"
        "Task stream, seconds per iteration summed over both workers "
        "(compute per task kind, `transfer` = worker-to-worker):\n\n"
        + "\n".join(f"- {k}: {v}" for k, v in sorted(per_iteration.items()))
        + f"\n\nWall time per iteration not spent computing blocks on the two workers "
        f"(scheduling, transfers, the M-step on the client): "
        f"{on_dask - sum(v for k, v in per_iteration.items() if k != 'transfer') / 2:.2f} s\n\n"
        f"max |means difference| Dask vs in memory: {agreement:.2e}\n\n"
        f"Machine: {results['machine']}\n\n"
        f"Command: `nice -n 10 python benchmarks/experiments/dask_scaling.py efficiency "
        f"--iters {args.iters} --blocks {args.blocks} --dtype {args.dtype}`\n"
    )
    print(md)
    write_results(args.out, "dask_efficiency", results, md)


# ---------------------------------------------------------------- out of core
class NpyRows:
    """Rows of a ``.npy`` file for ``dask.array.from_array``: opened with
    ``mmap_mode='r'`` where a block is read, pickled by path (never by content)."""

    def __init__(self, path: str) -> None:
        self.path = str(path)
        header = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype, self.ndim = header.shape, header.dtype, header.ndim

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.array(np.load(self.path, mmap_mode="r")[index])


def write_data(path: Path, n: int, d: int, seed: int, rows: int = 1_000_000) -> None:
    """N x d float32 from 3 Gaussian clusters, written in pieces (little memory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(3, d)).astype(np.float32)
    mixing = [rng.normal(scale=0.3, size=(d, d)).astype(np.float32) for _ in range(3)]
    for start in range(0, n, rows):
        m = min(rows, n - start)
        labels = rng.integers(3, size=m)
        z = rng.standard_normal((m, d), dtype=np.float32)
        block = np.empty((m, d), np.float32)
        for k in range(3):
            sel = labels == k
            block[sel] = z[sel] @ mixing[k] + z[sel] + centres[k]
        out[start : start + m] = block
    out.flush()
    del out


def out_of_core(args: argparse.Namespace) -> None:
    import dask.array as da

    path = Path(args.path)
    expected = (args.n, 50)
    if not path.exists() or np.load(path, mmap_mode="r").shape != expected:
        start = time.perf_counter()
        write_data(path, args.n, 50, args.seed)
        print(
            f"wrote {path} ({path.stat().st_size / 1e9:.2f} GB) in {time.perf_counter() - start:.0f} s"
        )
    source = NpyRows(str(path))
    X = da.from_array(source, chunks=(args.chunk, 50), asarray=False, lock=False, fancy=False)
    init_rows = np.array(np.load(path, mmap_mode="r")[:100_000])
    ref = GaussianMixture(3, random_state=args.seed, max_iter=1).fit(init_rows)
    init = {
        "weights_init": ref.weights_,
        "means_init": ref.means_,
        "precisions_init": ref.precisions_,
    }
    params = dict(n_components=3, covariance_type="full", dtype=np.float32)
    cluster, client = _cluster(memory_limit="1GB")
    try:
        pids = {f"worker {i}": pid for i, pid in enumerate(client.run(os.getpid).values())}
        pids["client"] = os.getpid()
        times, cpu = {}, {}
        with PeakMemory(pids) as peak:
            # A first fit warms the page cache and the workers' imports, which would
            # otherwise inflate the 1-iteration fit and so shrink the difference.
            warm_wall, _, _ = _timed_fit(X, 1, init, client, **params)
            print(f"warm-up fit (1 iteration): {warm_wall:.1f} s", flush=True)
            for iters in (1, args.iters):
                times[iters], cpu[iters], gm = _timed_fit(X, iters, init, client, **params)
                print(f"out of core, {iters} iteration(s): {times[iters]:.1f} s", flush=True)
        limit = (
            cluster.workers[0].memory_manager.memory_limit
            if hasattr(cluster.workers[0], "memory_manager")
            else None
        )
    finally:
        client.close()
        cluster.close()
    per_iteration = (times[args.iters] - times[1]) / (args.iters - 1)
    cpu_per_iteration = (cpu[args.iters] - cpu[1]) / (args.iters - 1)
    results = {
        "n_samples": args.n,
        "n_features": 50,
        "K": 3,
        "chunk_rows": args.chunk,
        "machine": _machine(),
        "fit_seconds": times,
        "warm_up_fit_seconds": warm_wall,
        "s_per_iteration": per_iteration,
        "samples_per_s": args.n / per_iteration,
        "cpu_s_per_iteration": cpu_per_iteration,
        "samples_per_cpu_s": args.n / cpu_per_iteration,
        "peak_rss_bytes": peak.peak,
        "worker_memory_limit_bytes": limit or 1e9,
        "lower_bound": gm.lower_bound_,
    }
    md = (
        "# EM on Dask arrays out of core\n\n"
        f"K = 3 full, {args.n:,} x 50 float32 ({args.n * 200 / 1e9:.1f} GB) in `{path}` read "
        f"through numpy.load(mmap_mode='r') per block ({args.chunk:,} rows), "
        "LocalCluster(2 workers x 1 thread, processes, memory_limit='1GB').\n\n"
        f"- seconds per iteration: {per_iteration:.2f} "
        f"(fits of 1 and {args.iters} iterations: {times[1]:.1f} s, {times[args.iters]:.1f} s, "
        f"after a warm-up fit of {warm_wall:.1f} s)\n"
        f"- samples per second: {args.n / per_iteration / 1e6:.2f} M\n"
        f"- CPU seconds per iteration (client and workers): {cpu_per_iteration:.2f}, "
        f"{args.n / cpu_per_iteration / 1e6:.2f} M samples per CPU second "
        f"(on 2 idle cores: {2 * args.n / cpu_per_iteration / 1e6:.2f} M samples/s)\n"
        + "".join(f"- peak RSS {name}: {rss / 2**20:.0f} MiB\n" for name, rss in peak.peak.items())
        + f"\nMachine: {results['machine']}\n\n"
        f"Command: `nice -n 10 python benchmarks/experiments/dask_scaling.py out-of-core "
        f"--n {args.n} --path {path} --iters {args.iters} --chunk {args.chunk}`\n"
    )
    print(md)
    write_results(args.out, "dask_out_of_core", results, md)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", choices=["efficiency", "out-of-core"])
    parser.add_argument("--mnist-dir", default=str(DEFAULT_MNIST_DIR))
    parser.add_argument("--out", default=str(RESULTS_DIR))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--iters", type=int, default=3, help="iterations of the longer fit")
    parser.add_argument("--n", type=int, default=None, help="samples (default 120,000 / 20M)")
    parser.add_argument("--blocks", type=int, default=8, help="blocks (efficiency)")
    parser.add_argument(
        "--dtype", choices=["float32", "float64"], default="float32", help="(efficiency)"
    )
    parser.add_argument("--chunk", type=int, default=250_000, help="rows per block (out of core)")
    parser.add_argument(
        "--path", default="/work/scratch-dask/oocore.npy", help=".npy file (out of core)"
    )
    args = parser.parse_args()
    if args.n is None:
        args.n = 120_000 if args.case == "efficiency" else 20_000_000
    (efficiency if args.case == "efficiency" else out_of_core)(args)


if __name__ == "__main__":
    main()
