"""Streaming a large .npy file through GaussianMixture.partial_fit (stepwise EM).

Writes a float32 ``.npy`` of ``--n`` samples x ``--d`` features drawn from a
random ``--k``-component Gaussian mixture into a temporary directory (or
``--dir``), chunk by chunk, then reads it once, batch by batch, through a
memory map: only one batch is ever in memory, whatever the file's size.
A progress bar shows samples per second and each batch's log-likelihood.
At the end the streamed model's mean log-likelihood on held-out samples is
compared with the true mixture's.

    python examples/stream_memmap.py                       # 1,000,000 x 50 (200 MB)
    python examples/stream_memmap.py --n 10000000          # 10 M x 50 (2 GB on disk)
    python examples/stream_memmap.py --checkpoint model.npz   # resumable: run it again after Ctrl-C

With ``--checkpoint``, the model (running statistics included) is saved
every ``--checkpoint-every`` batches and at Ctrl-C; a later run with the
same file resumes after the samples it has seen (``n_samples_seen_``) and
ends where an uninterrupted run would have.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from gmmfast import GaussianMixture
from gmmfast.utils._progress import bar, progress_bars


def true_mixture(k: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and covariance factors of a random mixture with separated clusters."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(k, 5.0))
    means = rng.normal(scale=4.0, size=(k, d))
    factors = rng.normal(scale=1.0 / np.sqrt(d), size=(k, d, d)) + np.eye(d)
    return weights, means, factors


def draw(n: int, mixture: tuple, rng: np.random.Generator) -> np.ndarray:
    weights, means, factors = mixture
    labels = rng.choice(len(weights), size=n, p=weights)
    z = rng.standard_normal((n, means.shape[1]))
    return means[labels] + np.einsum("nd,nde->ne", z, factors[labels])


def write_npy(path: str, n: int, mixture: tuple, seed: int, chunk: int = 100_000) -> None:
    """Fill a float32 .npy of n rows chunk by chunk (never all in memory)."""
    d = mixture[1].shape[1]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(seed + 1)
    with bar(total=n, desc="writing", unit="sample", unit_scale=True) as progress:
        for lo in range(0, n, chunk):
            out[lo : lo + chunk] = draw(min(chunk, n - lo), mixture, rng)
            progress.update(min(chunk, n - lo))
    out.flush()
    del out


def true_log_likelihood(mixture: tuple, X: np.ndarray) -> float:
    """Mean log-likelihood of X under the generating mixture."""
    weights, means, factors = mixture
    covariances = factors.transpose(0, 2, 1) @ factors  # x = mu + z F: covariance F^T F
    truth = GaussianMixture(
        len(weights),
        weights_init=weights,
        means_init=means,
        precisions_init=np.linalg.inv(covariances),
        max_iter=0,
    ).fit(X[: len(weights)])  # max_iter=0: the given parameters, unchanged
    return truth.score(X)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="samples in the file")
    parser.add_argument("--d", type=int, default=50, help="features")
    parser.add_argument("--k", type=int, default=10, help="components (true and fitted)")
    parser.add_argument("--batch", type=int, default=1000, help="samples per partial_fit call")
    parser.add_argument(
        "--first-batch",
        type=int,
        default=10_000,
        help="samples of the first call, which initialises the mixture (k-means on them): "
        "much more than --k, so that small clusters are found",
    )
    parser.add_argument("--learning-decay", type=float, default=0.6)
    parser.add_argument("--dir", help="where the .npy goes (default: a temporary directory)")
    parser.add_argument("--checkpoint", help="model file to save to and resume from")
    parser.add_argument("--checkpoint-every", type=int, default=200, help="batches")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    mixture = true_mixture(args.k, args.d, args.seed)
    with tempfile.TemporaryDirectory(dir=args.dir) as folder, progress_bars(verbose=True):
        path = os.path.join(folder, f"stream_{args.n}x{args.d}.npy")
        start = time.perf_counter()
        write_npy(path, args.n, mixture, args.seed)
        print(
            f"wrote {path}: {os.path.getsize(path) / 1e6:,.0f} MB in {time.perf_counter() - start:.1f} s"
        )
        X = np.load(path, mmap_mode="r")  # nothing read yet
        X_test = draw(20_000, mixture, np.random.default_rng(args.seed + 2)).astype(np.float32)

        if args.checkpoint and os.path.exists(args.checkpoint):
            gm = GaussianMixture.load(args.checkpoint)
            print(f"resuming {args.checkpoint} after {gm.n_samples_seen_:,} samples")
        else:
            gm = GaussianMixture(
                args.k,
                dtype=np.float32,
                learning_decay=args.learning_decay,
                random_state=args.seed,
            )
        done = getattr(gm, "n_samples_seen_", 0)
        start, seen = time.perf_counter(), 0
        try:
            with bar(
                total=len(X), initial=done, desc="partial_fit", unit="sample", unit_scale=True
            ) as progress:
                lo = done
                while lo < len(X):
                    size = args.first_batch if lo == 0 else args.batch
                    batch = X[lo : lo + size]  # a view: read from disk by partial_fit only
                    gm.partial_fit(batch)
                    lo += len(batch)
                    seen += len(batch)
                    progress.update(len(batch))
                    progress.set_postfix_str(f"batch ll {gm.lower_bound_:.3f}", refresh=False)
                    if args.checkpoint and gm.n_batches_seen_ % args.checkpoint_every == 0:
                        gm.save(args.checkpoint)
        except KeyboardInterrupt:
            if args.checkpoint:  # every partial_fit call is all or nothing: the model is whole
                gm.save(args.checkpoint)
                print(f"\ninterrupted; saved to {args.checkpoint}: run again to resume")
            raise
        seconds = time.perf_counter() - start
        if args.checkpoint:
            gm.save(args.checkpoint)
        del X  # close the memory map before the directory goes

    print(
        f"streamed {seen:,} samples in {gm.n_batches_seen_:,} batches (first {args.first_batch:,}, "
        f"then {args.batch:,}): "
        f"{seconds:.1f} s, {seen / max(seconds, 1e-9):,.0f} samples/s"
    )
    print(
        f"held-out mean log-likelihood: streamed model {gm.score(X_test):.4f}, "
        f"true mixture {true_log_likelihood(mixture, X_test):.4f}"
    )


if __name__ == "__main__":
    main()
