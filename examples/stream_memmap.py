"""
Streaming a file larger than memory through ``partial_fit``
===========================================================

Writes a float32 ``.npy`` of ``--n`` samples x ``--d`` features drawn from a
random ``--k``-component Gaussian mixture into a temporary directory (or
``--dir``), then reads it once, batch by batch, through a memory map: only one
batch is ever in memory, whatever the file's size. Stepwise EM
(:meth:`gmmfast.GaussianMixture.partial_fit`) updates the mixture after every
batch; at the end the streamed model's mean log-likelihood on held-out samples
is compared with the true mixture's, and the figure shows each batch's
log-likelihood as the stream goes on.

The defaults (200,000 x 20, 16 MB) run in seconds; the same script streams files
of any size::

    python examples/stream_memmap.py --n 10000000 --d 50      # 2 GB on disk
    python examples/stream_memmap.py --checkpoint model.npz   # resumable after Ctrl-C

With ``--checkpoint``, the model (running statistics included) is saved every
``--checkpoint-every`` batches and at Ctrl-C; a later run with the same file
resumes after the samples it has seen (``n_samples_seen_``) and ends where an
uninterrupted run would have. A progress bar (tqdm, which gmmfast depends on)
shows on a terminal.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
from tqdm import tqdm

from gmmfast import GaussianMixture


def true_mixture(k: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and covariance factors of a random mixture with separated clusters."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(k, 5.0))
    means = rng.normal(scale=4.0, size=(k, d))
    factors = rng.normal(scale=1.0 / np.sqrt(d), size=(k, d, d)) + np.eye(d)
    return weights, means, factors


def draw(n: int, mixture: tuple, rng: np.random.Generator) -> np.ndarray:
    """n samples of the mixture, float32 (x = mu + z F, z standard normal)."""
    weights, means, factors = mixture
    labels = rng.choice(len(weights), size=n, p=weights)
    z = rng.standard_normal((n, means.shape[1]), dtype=np.float32)
    out = np.matmul(z[:, None, :], factors[labels].astype(np.float32))[:, 0]
    return out + means[labels].astype(np.float32)


def write_npy(path: str, n: int, mixture: tuple, seed: int, chunk: int = 100_000) -> None:
    """Fill a float32 .npy of n rows chunk by chunk (never all in memory)."""
    d = mixture[1].shape[1]
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    rng = np.random.default_rng(seed + 1)
    for lo in range(0, n, chunk):
        out[lo : lo + chunk] = draw(min(chunk, n - lo), mixture, rng)
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
    parser = argparse.ArgumentParser(description="Streaming a file through partial_fit")
    parser.add_argument("--n", type=int, default=200_000, help="samples in the file")
    parser.add_argument("--d", type=int, default=20, help="features")
    parser.add_argument("--k", type=int, default=5, help="components (true and fitted)")
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
    batch_ll = []
    with tempfile.TemporaryDirectory(dir=args.dir) as folder:
        path = os.path.join(folder, f"stream_{args.n}x{args.d}.npy")
        start = time.perf_counter()
        write_npy(path, args.n, mixture, args.seed)
        print(
            f"wrote {os.path.basename(path)}: {os.path.getsize(path) / 1e6:,.0f} MB "
            f"in {time.perf_counter() - start:.1f} s"
        )
        X = np.load(path, mmap_mode="r")  # nothing read yet
        X_test = draw(20_000, mixture, np.random.default_rng(args.seed + 2))

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
            # disable=None: a bar on a terminal, nothing in a log or a notebook's output
            with tqdm(
                total=len(X), initial=done, desc="partial_fit", unit="sample", disable=None
            ) as progress:
                lo = done
                while lo < len(X):
                    size = args.first_batch if lo == 0 else args.batch
                    batch = X[lo : lo + size]  # a view: read from disk by partial_fit only
                    gm.partial_fit(batch)
                    lo += len(batch)
                    seen += len(batch)
                    batch_ll.append((lo, gm.lower_bound_))
                    progress.update(len(batch))
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
        f"then {args.batch:,}): {seconds:.1f} s, {seen / max(seconds, 1e-9):,.0f} samples/s"
    )
    truth = true_log_likelihood(mixture, X_test)
    print(
        f"held-out mean log-likelihood: streamed model {gm.score(X_test):.4f}, "
        f"true mixture {truth:.4f}"
    )

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no figure: pip install matplotlib")
        return
    if batch_ll:
        position, ll = np.array(batch_ll).T
        fig, ax = plt.subplots(figsize=(7, 3.5))
        ax.plot(position, ll, lw=0.8, label="each batch, at the parameters before its step")
        ax.axhline(truth, color="black", ls="--", label="true mixture, held-out samples")
        ax.set_xlabel("samples streamed")
        ax.set_ylabel("mean log-likelihood")
        ax.set_ylim(truth - 5, truth + 3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()


if __name__ == "__main__":
    main()
